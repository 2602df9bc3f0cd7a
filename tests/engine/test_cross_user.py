"""Two users of one store, in real processes: each unpickles only what they trust.

Alice is this test process; Bob is a child process with his own user name and keys
directory, using the same store and cluster (as a teammate's kernel on a shared store).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_flow.artifacts.keyring import load_keyring

from . import security_ops as sec

REPO = Path(__file__).resolve().parents[2]

BOB = """
import json, os, sys
import jupyter_flow as jf
from jupyter_flow.core.errors import ArtifactForeign
from tests.engine import security_ops as sec

jf.cluster(os.environ["FLOW_TEST_SCHEDULER"])
out = {}
for run_id in sys.argv[1:]:
    try:
        jf.get_run(run_id).result()
        out[run_id] = "loaded"
    except ArtifactForeign as err:
        out[run_id] = str(err)
run = jf.run(sec.as_set(3))
out["tasks"] = [[t.status, t.reason] for t in run.tasks]
out["value"] = sorted(run.result())
print("RESULT " + json.dumps(out))
"""


def _as_bob(env, tmp_path, *args, script=None, check=True):
    env = {**env, "LOGNAME": "bob", "USER": "bob", "JUPYTER_FLOW_KEYS": str(tmp_path / "bob-keys"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))}
    command = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "jupyter_flow.cli", *args]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def _result(done) -> dict:
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.fixture
def alice(monkeypatch):
    monkeypatch.setenv("LOGNAME", "alice")
    monkeypatch.setenv("USER", "alice")


def test_a_teammates_values_run_no_code_until_trusted(alice, jf, subprocess_env, tmp_path):
    marker = tmp_path / "pwned"
    sets = jf.run(sec.as_set(3))
    booby = jf.run(sec.trojan(str(marker)))  # validly signed, by Alice
    assert sets.status == booby.status == "SUCCESS" and not marker.exists()
    ring = load_keyring()
    assert ring.user == "alice"

    # Bob's kernel refuses both of Alice's pickles, naming her and the command to trust her.
    done = _as_bob(subprocess_env, tmp_path, sets.id, booby.id, script=BOB)
    seen = _result(done)
    assert not marker.exists()
    for run_id in (sets.id, booby.id):
        assert "made by alice" in seen[run_id] and "jupyter flow trust add alice" in seen[run_id], seen
    # Her cache hit is not his: he computes it himself, and says why.
    [[status, reason]] = seen["tasks"]
    assert status == "SUCCESS" and "alice" in reason and "do not trust" in reason, seen
    assert seen["value"] == [0, 1, 2]

    # Alice's own entry is kept: her rerun is still a hit on her value.
    again = jf.run(sec.as_set(3))
    assert [t.status for t in again.tasks] == ["CACHED"] and again.result() == {0, 1, 2}

    # Bob trusts Alice explicitly; now her cached value is his hit.
    added = _as_bob(subprocess_env, tmp_path, "trust", "add", "alice")
    assert ring.key_id in added.stdout and "trusted alice" in added.stdout
    listed = _as_bob(subprocess_env, tmp_path, "trust", "list", "--json")
    assert [row["user"] for row in json.loads(listed.stdout)] == ["alice"]
    seen = _result(_as_bob(subprocess_env, tmp_path, sets.id, script=BOB))
    assert seen[sets.id] == "loaded" and [s for s, _ in seen["tasks"]] == ["CACHED"], seen

    # And revoking it takes effect at once.
    _as_bob(subprocess_env, tmp_path, "trust", "rm", "alice")
    seen = _result(_as_bob(subprocess_env, tmp_path, sets.id, script=BOB))
    assert "jupyter flow trust add alice" in seen[sets.id]
    assert not marker.exists()


def test_the_store_and_its_artifacts_are_private(jf, flow_home):
    import stat

    jf.run(sec.as_set(2)).result()
    from jupyter_flow.engine import runtime

    runtime.get_engine().writer.flush()
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in flow_home.iterdir()}
    assert modes["flow.db"] == 0o600, modes
    for name in ("flow.db-wal", "flow.db-shm"):
        if name in modes:  # SQLite gives its side files the database file's mode
            assert modes[name] == 0o600, modes
    artifacts = flow_home / "artifacts"
    assert stat.S_IMODE(artifacts.stat().st_mode) == 0o700
    files = [p for p in artifacts.rglob("*") if p.is_file()]
    assert files and {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}
    dirs = [p for p in artifacts.rglob("*") if p.is_dir()]
    assert {stat.S_IMODE(p.stat().st_mode) for p in dirs} == {0o700}
