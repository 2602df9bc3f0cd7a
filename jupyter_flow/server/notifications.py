"""Notifications of ended runs: a webhook POST and/or an e-mail for each top-level run.

``RunEndWatcher`` follows the store's change feed from the moment the server starts
and hands every top-level run (one without ``parent_id``) that ended with a status and
kind the server notifies about to a notifier, exactly once per run and server.
``Notifier`` is the default notifier: it POSTs the event as JSON to a webhook and sends
it by e-mail through an SMTP server; a site can swap it (``FlowApp.notifier_class``) for
anything with the same constructor keywords and a ``notify(event)`` method.

Secrets stay out of the log: a webhook URL often carries a token (in its path or query),
so only its scheme and host are ever logged; the SMTP password never is.

>>> event = run_event({"id": "R1", "name": "nightly", "kind": "batch", "status": "FAILED",
...                    "error": "cell 3 failed", "notebook": "/srv/nb/train.ipynb",
...                    "schedule_id": None, "ended_at": None}, "http://lab.example.org/")
>>> event["event"], event["url"]
('run.ended', 'http://lab.example.org/lab?flow-run=R1')
"""

from __future__ import annotations

import base64
import json
import logging
import re
import smtplib
import ssl
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Callable, Iterable
from urllib.parse import quote, urlsplit, urlunsplit

from jupyter_flow._version import __version__
from jupyter_flow.server.errors import StoreUnavailable
from jupyter_flow.server.service import to_json
from jupyter_flow.store import Store

log = logging.getLogger("jupyter_flow.server")

#: Seconds a webhook or SMTP server may take before the notification counts as failed.
HOOK_TIMEOUT_S = 10.0
#: Run ids remembered as notified; a run's record can change after it ended (pinned,
#: its tasks' logs trimmed), and each change brings it back through the feed.
REMEMBERED_RUNS = 10_000
#: Fields of the run an event carries.
EVENT_RUN_FIELDS = ("id", "name", "kind", "status", "error", "notebook", "schedule_id", "ended_at")
#: Line breaks and other control characters: never allowed into a header's value.
_HEADER_BREAKS = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
_VERBS = {"SUCCESS": "succeeded", "FAILED": "failed", "LOST": "was lost", "CANCELED": "was canceled"}


def run_link(lab_url: str, run_id: str) -> str:
    """Where JupyterLab opens the run's view (the sidebar reads ``?flow-run=``).

    >>> run_link("http://127.0.0.1:8888/user/ana/", "R1")
    'http://127.0.0.1:8888/user/ana/lab?flow-run=R1'
    """
    return f"{lab_url.rstrip('/')}/lab?flow-run={quote(run_id, safe='')}"


def run_event(run: dict, lab_url: str) -> dict:
    """The JSON payload of one ended run (the webhook body; the e-mail says the same)."""
    fields = {name: run.get(name) for name in EVENT_RUN_FIELDS}
    return {"event": "run.ended", "run": to_json(fields), "url": run_link(lab_url, run["id"])}


def webhook_label(url: str) -> str:
    """How logs name a webhook: scheme and host only (its path or query may hold a token).

    >>> webhook_label("https://hooks.example.org/services/T0/B0/s3cr3t?token=abc")
    'https://hooks.example.org'
    >>> webhook_label("https://bot:pw@chat.example.org:8443/hook")
    'https://chat.example.org:8443'
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unparsable webhook URL)"
    return f"{parts.scheme or '?'}://{host}{port}"


def header_value(text: str) -> str:
    """``text`` as one line safe for an e-mail header: a run name may hold CR/LF, which
    ``EmailMessage`` refuses (the mail was lost) and which must never start a header of its own.

    >>> header_value("nightly\\r\\nBcc: eve@example.org")
    'nightly Bcc: eve@example.org'
    """
    return _HEADER_BREAKS.sub(" ", str(text)).strip()


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class Notifier:
    """Sends each event to a webhook (JSON POST) and/or by e-mail; either may be unset.

    Every failure is logged in one line without secrets and swallowed: a notification
    that cannot be delivered must not disturb the server or the next notification.

    >>> notifier = Notifier(webhook_url="https://hooks.example.org/T0/s3cr3t")  # doctest: +SKIP
    >>> notifier.notify(run_event(run, "http://127.0.0.1:8888/"))               # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        webhook_url: str = "",
        email_to: Iterable[str] = (),
        smtp_host: str = "",
        smtp_port: int = 0,
        smtp_username: str = "",
        smtp_password: str = "",
        smtp_from: str = "",
        smtp_starttls: bool = False,
        timeout: float = HOOK_TIMEOUT_S,
    ):
        self.webhook_url = webhook_url or ""
        self.email_to = [address for address in email_to if address]
        self.smtp_host = smtp_host or ""
        self.smtp_port = smtp_port
        self.smtp_username = smtp_username or ""
        self._smtp_password = smtp_password or ""
        self.smtp_from = smtp_from or ""
        self.smtp_starttls = smtp_starttls
        self.timeout = timeout

    def __repr__(self) -> str:  # never the webhook's path or the password
        hooks = [f"webhook={webhook_label(self.webhook_url)}"] if self.webhook_url else []
        if self.email_to:
            hooks.append(f"email_to={self.email_to} via {self.smtp_host or 'localhost'}:{self.smtp_port or 25}")
        return f"Notifier({', '.join(hooks)})"

    @property
    def enabled(self) -> bool:
        """Whether there is anywhere to send to."""
        return bool(self.webhook_url or self.email_to)

    def notify(self, event: dict) -> None:
        """Deliver one event to every configured hook."""
        if self.webhook_url:
            self._post(event)
        if self.email_to:
            self._email(event)

    # -- webhook --------------------------------------------------------------------------

    def _post(self, event: dict) -> None:
        label = webhook_label(self.webhook_url)
        try:
            request = self._webhook_request(event)
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(64 * 1024)
        except urllib.error.HTTPError as err:
            log.warning("jupyter_flow: the webhook %s refused the notification of run %s: HTTP %s %s",
                        label, event["run"]["id"], err.code, self._clean(str(err.reason))[:200])
        except Exception as err:  # any failure to deliver is logged, never raised
            log.warning("jupyter_flow: the notification of run %s could not be posted to the webhook %s "
                        "(%s: %s)", event["run"]["id"], label, type(err).__name__, self._clean(str(err))[:200])

    def _webhook_request(self, event: dict) -> urllib.request.Request:
        parts = urlsplit(self.webhook_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"the webhook URL must start with http:// or https://, not {parts.scheme!r}")
        headers = {"Content-Type": "application/json", "User-Agent": f"jupyter-flow/{__version__}"}
        url = self.webhook_url
        if parts.username is not None:  # urllib cannot send user:password@host itself
            credentials = f"{parts.username}:{parts.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
            netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
            url = urlunsplit(parts._replace(netloc=netloc))
        return urllib.request.Request(url, data=json.dumps(event).encode(), headers=headers, method="POST")

    # -- e-mail ---------------------------------------------------------------------------

    def _email(self, event: dict) -> None:
        where = f"{self.smtp_host or 'localhost'}:{self.smtp_port or 25}"
        try:
            message = self.email_message(event)
            with smtplib.SMTP(self.smtp_host or "localhost", self.smtp_port or 25, timeout=self.timeout) as smtp:
                if self.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.smtp_username:
                    smtp.login(self.smtp_username, self._smtp_password)
                smtp.send_message(message)
        except Exception as err:  # any failure to deliver is logged, never raised
            log.warning("jupyter_flow: the notification of run %s could not be e-mailed through %s (%s: %s)",
                        event["run"]["id"], where, type(err).__name__, self._clean(str(err))[:200])

    def email_message(self, event: dict) -> EmailMessage:
        """The e-mail of one event: the outcome in the subject, the details and link inside."""
        run = event["run"]
        name = run.get("name") or run["id"]
        outcome = _VERBS.get(run["status"], f"ended {run['status']}")
        message = EmailMessage()
        message["Subject"] = header_value(f"[jupyter_flow] {run['kind']} run {name} {outcome}")
        message["From"] = header_value(self.smtp_from or self.smtp_username or "jupyter-flow@localhost")
        message["To"] = header_value(", ".join(self.email_to))
        lines = [f"The {run['kind']} run {name} ({run['id']}) {outcome}.", ""]
        for field in ("status", "notebook", "schedule_id", "ended_at", "error"):
            if run.get(field):
                lines.append(f"{field}: {run[field]}")
        lines += ["", f"Open it in JupyterLab: {event['url']}", ""]
        message.set_content("\n".join(lines))
        return message

    def _clean(self, text: str) -> str:
        """An error message with the webhook URL's secrets and the SMTP password taken out."""
        parts = urlsplit(self.webhook_url) if self.webhook_url else None
        secrets = [self.webhook_url, self._smtp_password]
        if parts is not None:
            secrets += [parts.path, parts.query, parts.password or ""]
        return _scrub(text, sorted((s for s in secrets if s and s != "/"), key=len, reverse=True))


class RunEndWatcher:
    """Follows the change feed; ``poll()`` notifies each newly ended top-level run once.

    Only runs that end after the watcher's first look at the store count (a server that
    starts does not announce yesterday's runs).

    >>> watcher = RunEndWatcher(lambda: store, notifier, lab_url=lambda: "http://127.0.0.1:8888/")  # doctest: +SKIP
    >>> watcher.poll()   # ids of the runs notified in this pass                                  # doctest: +SKIP
    []
    """

    def __init__(
        self,
        store: Callable[[], Store],
        notifier: Any,
        *,
        lab_url: Callable[[], str],
        statuses: Iterable[str] = ("SUCCESS", "FAILED", "LOST", "CANCELED"),
        kinds: Iterable[str] = ("batch", "notebook", "cell", "api"),
        page: int = 500,
    ):
        self._store = store
        self.notifier = notifier
        self._lab_url = lab_url
        self.statuses = set(statuses)
        self.kinds = set(kinds)
        self._page = page
        self._cursor: int | None = None
        self._since: datetime | None = None
        self._notified: OrderedDict[str, None] = OrderedDict()
        self._stopping = threading.Event()

    def start_from(self, store: Store) -> None:
        """Notify only runs that end from now on (called at server start if the store is
        open; else the first pass that finds it open starts there)."""
        self._cursor, self._since = store.feed_cursor(), store.now()

    def stop(self) -> None:
        """Stop between two deliveries (a pass may otherwise wait on hooks for a while)."""
        self._stopping.set()

    def poll(self) -> list[str]:
        """One pass over the changes since the last one; the ids of the runs notified."""
        try:
            store = self._store()
        except StoreUnavailable:
            return []  # logged once by StoreAccess; the API answers 503 meanwhile
        if self._cursor is None:
            self.start_from(store)
            return []
        notified: list = []
        while not self._stopping.is_set():
            runs, cursor = store.changes_since(self._cursor, self._page)
            for run in runs:
                if self._stopping.is_set():
                    return notified
                self._cursor = run["seq"]
                if self._due(run):
                    self._remember(run["id"])
                    self.notifier.notify(run_event(run, self._lab_url()))
                    notified.append(run["id"])
            self._cursor = cursor
            if len(runs) < self._page:
                break
        return notified

    def _due(self, run: dict) -> bool:
        return (
            run.get("parent_id") is None
            and run["status"] in self.statuses
            and run["kind"] in self.kinds
            and run.get("ended_at") is not None
            and self._since is not None
            and run["ended_at"] >= self._since
            and run["id"] not in self._notified
        )

    def _remember(self, run_id: str) -> None:
        self._notified[run_id] = None
        while len(self._notified) > REMEMBERED_RUNS:
            self._notified.popitem(last=False)
