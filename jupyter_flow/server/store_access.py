"""``StoreAccess``: the server's store, or the reason it cannot be opened.

A store the server cannot open (a corrupt SQLite file, a schema written by a newer
jupyter_flow, a PostgreSQL server that does not answer) must not keep Jupyter from
starting. The failure is logged once, in one line; every API route that needs the store
answers 503 with that reason, which names the store and says what to do; and opening is
tried again (at most every ``retry_interval`` seconds, on the next request or reconciler
pass), so fixing the store needs no restart.

>>> access = StoreAccess("sqlite:////srv/flow/flow.db", retry_interval=5.0)  # doctest: +SKIP
>>> access.open()            # None, and one log line, if it cannot be opened  # doctest: +SKIP
>>> access.get().list_runs(limit=5)    # or StoreUnavailable (HTTP 503)        # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Callable

from sqlalchemy import exc as sa_exc

from jupyter_flow.core.errors import StoreError, StoreVersionError
from jupyter_flow.server.errors import StoreUnavailable
from jupyter_flow.store import Store
from jupyter_flow.store.database import normalize_url, sqlite_path

_PASSWORD_IN_URL = re.compile(r"(//[^:/@]*:)[^@/]*@")
_CONFIG_HINT = "JUPYTER_FLOW_DB or FlowApp.db_url"


def store_label(url: str) -> str:
    """How messages name a store: a SQLite file's path, else the URL without its password.

    >>> store_label("sqlite:////home/ana/.local/share/jupyter/flow/flow.db")
    '/home/ana/.local/share/jupyter/flow/flow.db'
    >>> store_label("postgresql://ana:s3cret@db.example.org/flow")
    'postgresql+psycopg://ana:***@db.example.org/flow'
    """
    try:
        parsed = normalize_url(url)
    except Exception:  # not even a URL: say it as given, minus anything that looks like a password
        return _PASSWORD_IN_URL.sub(r"\1***@", url)
    path = sqlite_path(parsed)
    if path is not None:
        return str(path)
    return parsed.render_as_string(hide_password=True)


def _password(url: str) -> str | None:
    try:
        password = normalize_url(url).password
    except Exception:  # an unparsable URL has no password we could find in messages
        return None
    return str(password) if password else None


def describe_failure(error: BaseException, url: str, *, trouble: str = "cannot open") -> str:
    """One line saying that the store ``url`` cannot be used, why, and what to do."""
    label = store_label(url)
    is_sqlite = url.startswith("sqlite")
    if isinstance(error, sa_exc.DBAPIError) and error.orig is not None:
        driver = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else type(error.orig).__name__
    else:
        driver = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    password = _password(url)
    if password:
        driver = driver.replace(password, "***")

    if isinstance(error, StoreVersionError):
        detail = str(error)  # names the revisions and says "upgrade jupyter_flow"
    elif isinstance(error, StoreError):
        detail = str(error)
    elif isinstance(error, sa_exc.ArgumentError):
        detail = (f"it is not a database URL jupyter_flow can use ({driver}); set {_CONFIG_HINT} "
                  "to sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
    elif isinstance(error, (sa_exc.NoSuchModuleError, ImportError)):
        detail = f"its database driver is not installed ({driver}); install it in the server's environment"
    elif is_sqlite and isinstance(error, sa_exc.OperationalError):
        detail = (f"SQLite cannot open it ({driver}); check that the file and its directory exist "
                  "and that the user running Jupyter may read and write them")
    elif is_sqlite and isinstance(error, sa_exc.DatabaseError):
        detail = (f"the file is not a readable SQLite database ({driver}); it is probably corrupt. "
                  f"Move it aside (mv {label} {label}.corrupt) and jupyter_flow starts a new, empty "
                  f"store there, or point {_CONFIG_HINT} at another store")
    elif isinstance(error, sa_exc.OperationalError):
        detail = (f"cannot connect to the database ({driver}); check that its server is running and "
                  f"reachable and that {_CONFIG_HINT} is right")
    elif isinstance(error, sa_exc.DBAPIError):
        detail = f"the database refused ({driver}); check the database user's permissions"
    elif isinstance(error, OSError):
        detail = (f"{driver}; check that its directory exists and that the user running Jupyter may "
                  "write there")
    else:
        detail = f"{type(error).__name__}: {driver}; the Jupyter server log has the details"
    return f"jupyter_flow {trouble} its store {label}: {detail}"


#: Failures a store can have that are not bugs of jupyter_flow: logged in one line.
EXPECTED_FAILURES = (StoreError, sa_exc.SQLAlchemyError, OSError, ImportError)


class StoreAccess:
    """Opens the store once, remembers why it could not, and tries again when due.

    Thread-safe: API calls run in worker threads. ``get()`` is one attribute read once the
    store is open.
    """

    def __init__(
        self,
        url: str,
        *,
        opener: Callable[[str], Store] = Store,
        retry_interval: float = 5.0,
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ):
        self.url = url
        self.label = store_label(url)
        self.retry_interval = retry_interval
        self._opener = opener
        self._log = log or logging.getLogger("jupyter_flow.server")
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._failure: StoreUnavailable | None = None
        self._next_attempt = 0.0
        self._closed = False

    @classmethod
    def of(cls, store: Store) -> StoreAccess:
        """Access to a store that is already open."""
        access = cls(store.url)
        access._store = store
        return access

    @property
    def failure(self) -> StoreUnavailable | None:
        """Why the store is not open (None once it is)."""
        return None if self._store is not None else self._failure

    def open(self) -> Store | None:
        """Try to open the store now; the store, or None after logging why not."""
        try:
            return self.get(retry_now=True)
        except StoreUnavailable:
            return None

    def get(self, *, retry_now: bool = False) -> Store:
        """The open store; opens it if it is not open and an attempt is due, else raises
        ``StoreUnavailable`` with the reason of the last failed attempt."""
        store = self._store
        if store is not None:
            return store
        # One attempt at a time. Callers that already have a reason to give do not wait for
        # another caller's attempt (a hung database would hold every request for seconds).
        failure = self._failure
        if not self._lock.acquire(blocking=failure is None or retry_now):
            raise failure
        try:
            return self._attempt(retry_now)
        finally:
            self._lock.release()

    def _attempt(self, retry_now: bool) -> Store:
        if self._store is not None:
            return self._store
        if self._closed:
            raise StoreUnavailable("jupyter_flow is shutting down", self.label)
        if self._failure is not None and not retry_now and time.monotonic() < self._next_attempt:
            raise self._failure
        try:
            store = self._opener(self.url)
        except Exception as err:  # any failure to open becomes the 503 every route answers
            failure = StoreUnavailable(describe_failure(err, self.url), self.label)
            if self._failure is None or failure.message != self._failure.message:
                self._log.error("%s", failure.message, exc_info=not isinstance(err, EXPECTED_FAILURES))
            self._failure = failure
            self._next_attempt = time.monotonic() + self.retry_interval
            raise failure from None
        if self._closed:  # the server stopped while this attempt waited on the database
            store.close()
            raise StoreUnavailable("jupyter_flow is shutting down", self.label)
        if self._failure is not None:
            self._log.info("jupyter_flow: the store %s is open now", self.label)
        self._store, self._failure = store, None
        return store

    def unavailable(self, error: BaseException, store: Store) -> StoreUnavailable | None:
        """The 503 for a database error that ``store`` raised after it was opened (its
        server went away, its file broke), or None for errors of other kinds. The store is
        dropped, so the next call opens it afresh (a moved-aside file, a restarted server)."""
        if not (isinstance(error, sa_exc.OperationalError) or type(error) is sa_exc.DatabaseError):
            return None
        failure = StoreUnavailable(describe_failure(error, self.url, trouble="lost"), self.label)
        if not self._lock.acquire(blocking=False):
            return failure  # another caller is dropping it or opening it again
        try:
            dropped = self._store is store
            if dropped:  # the first caller to notice drops it; later ones find it gone
                self._store, self._failure = None, failure
                self._next_attempt = time.monotonic()
        finally:
            self._lock.release()
        if dropped:
            self._log.error("%s", failure.message)
            store.close()
        return failure

    def close(self) -> None:
        """Close the store (if open) and stop opening it. Never waits for an attempt in
        progress (that one closes what it opens), so stopping the server cannot hang here."""
        self._closed = True
        store, self._store = self._store, None
        if store is not None:
            store.close()
