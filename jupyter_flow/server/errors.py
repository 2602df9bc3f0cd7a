"""Errors the REST API reports to its clients, each with the HTTP status it maps to.

Services and request checks raise these; the handlers turn them into JSON error bodies
(``{"message", "reason"}``, plus ``store`` for ``StoreUnavailable``).

>>> try:
...     raise NotFound("no run 'R9' in the store")
... except ApiError as err:
...     print(err.status, err.message)
404 no run 'R9' in the store
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the API reports to its client, with the HTTP status it maps to."""

    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def body_fields(self) -> dict[str, Any]:
        """Fields the JSON error body carries besides ``message`` and ``reason``."""
        return {}


class BadRequest(ApiError):
    status = 400


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class Unprocessable(ApiError):
    status = 422


class ShuttingDown(ApiError):
    """The server is stopping (SIGTERM, ``jupyter server stop``): a request that arrives
    after its worker threads stopped taking calls is answered this, not a 500."""

    status = 503


class StoreUnavailable(ApiError):
    """The server cannot open its store; ``store`` names it (a SQLite file's path, or the
    database URL with its password hidden). Every route that needs the store answers this."""

    status = 503

    def __init__(self, message: str, store: str):
        super().__init__(message)
        self.store = store

    def body_fields(self) -> dict[str, Any]:
        return {"store": self.store}
