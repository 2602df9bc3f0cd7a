"""Planted pickles never run through the engine's load paths; secrets are never stored in plain text."""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest

from jupyter_flow.core.errors import ArtifactUntrusted
from jupyter_flow.engine import runtime
from tests.planted import files_holding, plant

from . import security_ops as sec


def _sql(flow_home, statement: str, *params) -> None:
    """Point the store at a planted artifact, as someone with write access to it could."""
    runtime.get_engine().writer.flush()  # pending writes must not overwrite this one
    with sqlite3.connect(flow_home / "flow.db") as conn:
        conn.execute(statement, params)


def test_planted_task_output_is_not_unpickled_by_result(jf, flow_home, tmp_path):
    marker = tmp_path / "pwned"
    run = jf.run(sec.as_set(3))
    assert run.result() == {0, 1, 2}
    (task,) = run.tasks
    planted = plant(flow_home / "artifacts", marker)
    _sql(flow_home, "UPDATE tasks SET outputs = ? WHERE id = ?", json.dumps({"return": planted}), task.id)
    runtime.shutdown()  # a later process: it reads the outputs from the store
    with pytest.raises(ArtifactUntrusted, match="has no signature") as err:
        jf.get_run(run.id).result()
    assert planted in str(err.value)
    assert not marker.exists()


def test_planted_cache_entries_are_dropped_and_recomputed(jf, flow_home, tmp_path, caplog):
    marker = tmp_path / "pwned"
    first = jf.run(sec.size(sec.as_set(4)))
    key = next(t.key for t in first.tasks if t.name == "as_set")
    engine = runtime.get_engine()

    # A rerun task needs the hit on a worker: the plan checks its signature and recomputes it.
    engine.writer.flush()
    engine.store.put_cache([{"key": key, "outputs": {"return": plant(flow_home / "artifacts", marker)},
                             "op_name": "as_set", "replace": True}])
    second = jf.run(sec.size(sec.as_set(4)), force=[sec.size])
    assert second.status == "SUCCESS" and second.result() == 4
    assert {t.name: t.cached for t in second.tasks} == {"as_set": False, "size": False}

    # A cached target is loaded by result(): untrusted, so dropped and recomputed.
    engine.writer.flush()
    engine.store.put_cache([{"key": key, "outputs": {"return": plant(flow_home / "artifacts", marker)},
                             "op_name": "as_set", "replace": True}])
    third = jf.run(sec.as_set(4))
    assert [t.status for t in third.tasks] == ["CACHED"]
    with caplog.at_level(logging.WARNING, logger="jupyter_flow"):
        assert third.result() == {0, 1, 2, 3}
    assert not marker.exists()
    assert any("stored result failed verification" in r.getMessage() for r in caplog.records)
    runtime.get_engine().writer.flush()
    (task,) = jf.get_run(third.id).tasks
    assert task.reason.startswith("stored result failed verification"), task.reason


def test_worker_written_pickles_verify_here_and_on_workers(jf):
    run = jf.run(sec.as_set(5))
    (task,) = run.tasks
    header = runtime.get_engine().artifacts.read_header(task.outputs["return"])
    assert header["serializer"] == "cloudpickle" and header["sig"].startswith("ed25519:")
    assert header["signer"] == runtime.get_engine().keyring.key_id and "mac" not in header
    assert run.result() == set(range(5))  # written by a worker, checked in this process
    jf.run(sec.size(sec.as_set(5)))
    again = jf.run(sec.size(sec.as_set(5)), force=[sec.size])
    # as_set is restored on a worker (load_cached), which checks it with the key the task carries
    assert {t.name: t.status for t in again.tasks} == {"as_set": "CACHED", "size": "SUCCESS"}
    assert again.result() == 5


def test_planted_snapshot_is_not_unpickled_by_resume(jf, flow_home, tmp_path):
    marker = tmp_path / "pwned"
    run = jf.run(sec.as_set(6))
    planted = plant(flow_home / "artifacts", marker)
    _sql(flow_home, "UPDATE runs SET snapshot = ? WHERE id = ?", planted, run.id)
    with pytest.raises(ArtifactUntrusted, match=f"jf.resume: the graph snapshot of run {run.id}"):
        jf.resume(run.id)
    assert not marker.exists()


def test_secrets_are_never_stored_in_plain_text_and_resume_works(jf, flow_home):
    from jupyter_flow.core.provenance import current_user
    from jupyter_flow.server.service import FlowService

    run = jf.run(sec.call_api(1), params={"api_token": "s3cr3t", "lr": 0.1})
    assert run.result() == 7
    engine = runtime.get_engine()
    engine.writer.flush()
    assert jf.get_run(run.id).params == {"api_token": "***", "lr": 0.1}
    snapshot = engine.store.get_run(run.id)["snapshot"]
    assert snapshot and engine.artifacts.read_header(snapshot)["sealed"] == "fernet"
    assert files_holding(flow_home) == []  # flow.db, its WAL, every artifact

    service = FlowService(engine.store, engine.artifacts, server_user=current_user())
    responses = [service.get_run(run.id), service.run_tasks(run.id), service.list_runs(limit=10)]
    responses += [service.artifact_preview(d, 65536) for d in (snapshot, run.tasks[0].outputs["return"])]
    assert "s3cr3t" not in json.dumps(responses)

    resumed = jf.resume(run.id)  # the sealed snapshot opens with its owner's seal key
    assert resumed.status == "SUCCESS" and resumed.result() == 7
    assert resumed.params == {"api_token": "***", "lr": 0.1}


def test_every_secret_name_and_password_url_is_kept_as_a_keyed_hash_only(jf, flow_home):
    import hashlib
    import os
    import stat

    from jupyter_flow.core.secrets import hash_key_path
    from jupyter_flow.core.provenance import current_user
    from jupyter_flow.server.service import FlowService

    guessable = "hunter2"
    values = {"creds": guessable + "-c", "pg_dsn": f"host=db user=app password={guessable}-d",
              "pwd": guessable + "-p", "apikey": guessable + "-a", "credential": guessable + "-cr",
              "url": f"https://app:{guessable}-u@db.example/x"}
    run = jf.run(sec.connect(**values, n=1))
    assert run.status == "SUCCESS", run.error
    engine = runtime.get_engine()
    engine.writer.flush()
    (task,) = engine.store.get_tasks(run.id)
    shown = task["components"]["params"]
    assert {k: shown[k] for k in values} == {
        "creds": "***", "pg_dsn": "***", "pwd": "***", "apikey": "***", "credential": "***",
        "url": "https://app:***@db.example/x"}
    assert shown["n"] == 1
    # What the store keeps is an HMAC with a key of the user's own, outside the store: no
    # plain value, and no unsalted hash one could test guesses against.
    assert files_holding(flow_home, guessable.encode()) == []
    for value in values.values():
        for unsalted in (hashlib.sha256(repr(value).encode()).hexdigest()[:16],
                         hashlib.sha256(f"str:{value!r}".encode()).hexdigest()[:16]):
            assert files_holding(flow_home, unsalted.encode()) == []
    key_file = hash_key_path()
    assert key_file.parent == flow_home.parent / "keys" and stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    service = FlowService(engine.store, engine.artifacts, server_user=current_user())
    assert guessable not in json.dumps([service.get_run(run.id), service.run_tasks(run.id)], default=str)
    assert [t.status for t in jf.run(sec.connect(**values, n=1)).tasks] == ["CACHED"]  # the key is stable
