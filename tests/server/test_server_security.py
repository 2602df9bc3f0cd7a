"""Every route needs credentials; XSRF on cookie POSTs; no traceback; no path traversal."""

from __future__ import annotations

import json

import pytest

from jupyter_flow.server.handlers import routes
from jupyter_flow.server.service import FlowService
from tests.server.conftest import check, make_run

DIGEST = "a" * 64


def _concrete(pattern: str) -> str:
    path = pattern.removeprefix("/jupyter-flow/api/")
    value = DIGEST if "artifacts" in path else "R1"
    return path.replace("([^/]+)", value)


def _methods(handler) -> list[str]:
    return [m for m in ("GET", "POST", "PATCH", "DELETE")
            if any(m.lower() in vars(cls) for cls in handler.__mro__ if cls.__module__.startswith("jupyter_flow"))]


ROUTES = [(_concrete(pattern), method) for pattern, handler in routes() for method in _methods(handler)]


@pytest.mark.parametrize("path, method", ROUTES)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "token wrong"}])
async def test_every_route_refuses_requests_without_valid_credentials(api, store, owner, path, method, headers):
    make_run(store, owner, "R1", name="secret-run-name")
    store.create_schedule({"id": "R1", "name": "secret-schedule", "notebook": "/nb/a.ipynb", "cron": "0 3 * * *"})
    body = {"POST": "{}", "PATCH": '{"paused": true}'}.get(method)
    status, body = await api(path, method=method, body=body, auth=False, headers=headers)
    assert status in (401, 403), (path, status)
    text = json.dumps(body) if isinstance(body, dict) else body.body.decode(errors="replace")
    assert "secret-run-name" not in text and "secret-schedule" not in text and "Traceback" not in text
    assert not store.cancel_requested(["R1"])
    assert store.get_schedule("R1")["paused"] is False and [s["id"] for s in store.list_schedules()] == ["R1"]


async def test_cookie_authenticated_post_needs_the_xsrf_token(api, store, owner):
    make_run(store, owner, "R1")
    # A token request makes the server set its login cookie, as a browser would get it.
    _, response = await api("health", raw=True)
    cookies = [c.split(";")[0] for c in response.headers.get_list("Set-Cookie")]
    assert cookies, "the server set no login cookie"
    cookie = "; ".join(cookies)

    status, body = await api("runs/R1/cancel", method="POST", auth=False, headers={"Cookie": cookie})
    assert status == 403
    assert "xsrf" in body["message"].lower()
    assert not store.cancel_requested(["R1"])

    status, _ = await api("runs/R1", auth=False, headers={"Cookie": cookie})
    assert status == 200  # the cookie itself is good: reading needs no XSRF token
    with_xsrf = {"Cookie": f"{cookie}; _xsrf=0123abcd", "X-XSRFToken": "0123abcd"}
    status, _ = await api("runs/R1/cancel", method="POST", auth=False, headers=with_xsrf)
    assert status == 202
    assert store.cancel_requested(["R1"]) == {"R1"}


@pytest.mark.parametrize(
    "path",
    [
        "artifacts/..%2F..%2F..%2Fetc%2Fpasswd",
        "artifacts/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "artifacts/..%252F..%252Fetc%252Fpasswd",
        "artifacts/../../../../etc/passwd",
        "artifacts/%2Fetc%2Fpasswd",
        "lineage/..%2F..%2Fetc%2Fpasswd",
        f"artifacts/{DIGEST[:-2]}..",
    ],
)
async def test_traversal_attempts_never_reach_files(api, path):
    for params in ({}, {"download": "1"}):
        status, body = await api(path, **params)
        assert status in (400, 404), (path, status)
        text = json.dumps(body) if isinstance(body, dict) else body.body.decode(errors="replace")
        assert "root:" not in text


async def test_a_bug_is_a_500_without_traceback(api, monkeypatch):
    def broken(self):
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(FlowService, "health", broken)
    status, body = await api("health")
    assert status == 500
    check(body, "Error")
    assert "internal detail" not in json.dumps(body) and "Traceback" not in json.dumps(body)
