"""POST runs/{id}/cancel: owner check, error codes, and a real run canceled end to end."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.server.authorizers import AdminAuthorizer, NoAdminAuthorizer, ReadOnlyAuthorizer
from tests.server.conftest import ME, check, make_run, start_background_run


async def test_cancel_records_the_request_for_the_run_and_its_children(api, store, owner):
    make_run(store, owner, "P")
    make_run(store, owner, "C1", parent_id="P")
    make_run(store, owner, "C2", parent_id="C1", status="PENDING")
    make_run(store, owner, "DONE", parent_id="P", status="SUCCESS")
    status, run = await api("runs/P/cancel", method="POST")
    assert status == 202
    check(run, "Run")
    assert run["cancel_requested_at"] and run["status"] == "RUNNING"  # the owner ends it
    assert store.cancel_requested(["P", "C1", "C2", "DONE"]) == {"P", "C1", "C2"}
    assert store.get_run("P")["cancel_requested_by"]  # the Jupyter user who asked


async def test_cancel_of_a_finished_or_lost_run_is_409(api, store, owner):
    make_run(store, owner, "DONE", status="SUCCESS")
    make_run(store, owner, "GONE")
    store.release_owner(owner)  # the owner exits: its unfinished run becomes LOST
    for run_id in ("DONE", "GONE"):
        status, body = await api(f"runs/{run_id}/cancel", method="POST")
        assert status == 409, run_id
        check(body, "Error")
        assert "nothing to cancel" in body["message"]


async def test_cancel_of_an_unknown_run_is_404(api):
    assert (await api("runs/NOPE/cancel", method="POST"))[0] == 404


@pytest.mark.parametrize("body", ["not json", "[1]", '{"force": true}', "42"])
async def test_cancel_with_a_bad_body_is_422(api, store, owner, body):
    make_run(store, owner, "R1")
    status, error = await api("runs/R1/cancel", method="POST", body=body)
    assert status == 422
    check(error, "Error")
    assert not store.cancel_requested(["R1"])


async def test_cancel_accepts_an_empty_json_object(api, store, owner):
    make_run(store, owner, "R1")
    assert (await api("runs/R1/cancel", method="POST", body="{}"))[0] == 202


@pytest.mark.parametrize("authorizer_class", [None, NoAdminAuthorizer])
async def test_only_the_owner_may_cancel_without_admin(api, store, owner, authorizer_class):
    # With Jupyter's default (allow-all) authorizer too: it is not an admin grant.
    make_run(store, owner, "THEIRS", user="someone-else")
    make_run(store, owner, "MINE", user=ME)
    status, body = await api("runs/THEIRS/cancel", method="POST")
    assert status == 403
    assert "someone-else" in body["message"]
    assert not store.cancel_requested(["THEIRS"])
    assert (await api("runs/MINE/cancel", method="POST"))[0] == 202


@pytest.mark.parametrize("authorizer_class", [AdminAuthorizer])
async def test_an_admin_may_cancel_any_run(api, store, owner, authorizer_class):
    make_run(store, owner, "THEIRS", user="someone-else")
    assert (await api("runs/THEIRS/cancel", method="POST"))[0] == 202
    assert store.cancel_requested(["THEIRS"]) == {"THEIRS"}


@pytest.mark.parametrize("authorizer_class", [ReadOnlyAuthorizer])
async def test_cancel_needs_write_permission(api, store, owner, authorizer_class):
    make_run(store, owner, "MINE", user=ME)
    assert (await api("runs/MINE", method="GET"))[0] == 200
    assert (await api("runs/MINE/cancel", method="POST"))[0] == 403
    assert not store.cancel_requested(["MINE"])


async def _until(api, path, predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        status, body = await api(path)
        assert status == 200, body
        if predicate(body):
            return body
        await asyncio.sleep(0.1)  # polling is what an API client does; there is no event
    raise AssertionError(f"{path}: condition not met within {timeout} s; last answer: {body}")


async def test_cancel_end_to_end_from_the_api(api, store, subprocess_env, tmp_path):
    proc, run_id = start_background_run(subprocess_env, tmp_path, "cancel-me", 60)
    try:
        child_owner = store.register_owner(user=ME)
        make_run(store, child_owner, "CHILD", parent_id=run_id)
        # In the full suite the session cluster's threads may still be busy with an earlier
        # test's long op for a while: `add` then waits for a free thread.
        await _until(api, f"runs/{run_id}/tasks", lambda body: {
            t["name"]: t["status"] for t in body["tasks"]} == {"sleepy": "RUNNING", "add": "SUCCESS"}, timeout=180)
        requested = time.monotonic()
        status, _ = await api(f"runs/{run_id}/cancel", method="POST")
        assert status == 202
        run = await _until(api, f"runs/{run_id}", lambda body: body["status"] != "RUNNING")
        noticed = time.monotonic() - requested
        assert run["status"] == "CANCELED"
        assert run["task_counts"] == {"CANCELED": 1, "SUCCESS": 1}  # finished work kept
        assert noticed < 10  # the owner polls every 0.5 s; generous for a loaded CI box
        _, child = await api("runs/CHILD")
        assert child["cancel_requested_at"] is not None
        assert proc.stdout.readline().strip() == "CANCELED"
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
