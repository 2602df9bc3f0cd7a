"""Artifacts on S3: the store, signed pickles, a cluster run, a batch, the cache commands,
against a real S3 server (moto's server mode on loopback, see conftest.py), with the
credentials only where AWS clients look for them, never stored or logged."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from tests.notebook_files import write_notebook
from tests.s3 import ops
from tests.s3.conftest import SECRET


def flow(*args, env=None):
    """``jupyter flow ARGS`` in a child process (environment: this one's, AWS variables included)."""
    return subprocess.run([sys.executable, "-m", "jupyter_flow.cli", *args], env=env or dict(os.environ),
                          capture_output=True, text=True, timeout=600)


def flow_json(*args):
    done = flow(*args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout), done


def objects(fs, bucket) -> dict[str, int]:
    """Every artifact object in the bucket: digest -> size, as S3 lists them now."""
    found = fs.find(f"{bucket}/artifacts", detail=True)
    return {path.rsplit("/", 1)[1]: info["size"] for path, info in found.items()
            if not path.rsplit("/", 1)[1].startswith(".")}


def test_the_artifact_store_works_on_s3(bucket, s3fs_client, tmp_path):
    from jupyter_flow.artifacts import ArtifactStore
    from jupyter_flow.artifacts.keyring import load_keyring

    store = ArtifactStore(f"s3://{bucket}/art", keyring=load_keyring(tmp_path / "keys"))
    plain = store.put({"accuracy": 0.93, "labels": ["a", "b"]})
    pickled = store.put({3, 1, 2})
    assert plain.uri == f"s3://{bucket}/art/{plain.digest[:2]}/{plain.digest}"
    assert (plain.serializer, pickled.serializer) == ("json", "cloudpickle") and pickled.signer
    # The objects are in the bucket, under their digests, and nowhere on this machine.
    for info in (plain, pickled):
        stored = s3fs_client.cat_file(f"{bucket}/art/{info.digest[:2]}/{info.digest}")
        assert stored[:24] == b"jupyter-flow-artifact/1\n"
    assert not any(p.is_file() for p in tmp_path.rglob("*") if "keys" not in p.parts)

    # A second store on the same URL (another process would be the same) reads them back.
    again = ArtifactStore(f"s3://{bucket}/art", keyring=load_keyring(tmp_path / "keys"))
    assert again.get(plain.digest) == {"accuracy": 0.93, "labels": ["a", "b"]}
    assert again.get(pickled.digest) == {1, 2, 3}
    assert again.verify(pickled.digest)["signer"] == pickled.signer
    assert sorted(again.digests()) == sorted([plain.digest, pickled.digest])
    assert again.size(plain.digest) == plain.size and again.exists(pickled.digest)

    preview = again.preview(plain.digest)
    assert (preview["kind"], preview["data"]) == ("json", {"accuracy": 0.93, "labels": ["a", "b"]})
    assert again.preview(pickled.digest)["data"] == "{1, 2, 3}"
    # As the Jupyter server previews it: the signature checked, the pickle decoded in a child process.
    server_side = ArtifactStore(f"s3://{bucket}/art", keyring=load_keyring(tmp_path / "keys"), unpickle=False)
    assert server_side.preview(pickled.digest)["data"] == "{1, 2, 3}"

    assert again.delete(plain.digest) and not again.delete(plain.digest)
    assert not again.exists(plain.digest)
    assert not s3fs_client.exists(f"{bucket}/art/{plain.digest[:2]}/{plain.digest}")
    assert list(again.digests()) == [pickled.digest]


class Planted:
    """What an attacker would put in the bucket: loading it runs a shell command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_tampered_with_in_the_bucket_is_refused(bucket, s3fs_client, tmp_path):
    import hashlib

    from jupyter_flow.artifacts import ArtifactStore
    from jupyter_flow.artifacts.keyring import load_keyring
    from jupyter_flow.core.errors import ArtifactUntrusted

    store = ArtifactStore(f"s3://{bucket}/art", keyring=load_keyring(tmp_path / "keys"))
    genuine = store.put({1, 2})
    key = f"{bucket}/art/{genuine.digest[:2]}/{genuine.digest}"
    original = s3fs_client.cat_file(key)
    header_end = original.index(b"\n", len(b"jupyter-flow-artifact/1\n")) + 1
    # Someone with write access to the bucket swaps the payload, keeps the signed header and
    # stores the result under its own correct digest: only the signature can tell.
    marker = tmp_path / "pwned"
    forged = original[:header_end] + pickle.dumps(Planted(marker))
    digest = hashlib.sha256(forged).hexdigest()
    s3fs_client.pipe_file(f"{bucket}/art/{digest[:2]}/{digest}", forged)

    reader = ArtifactStore(f"s3://{bucket}/art", keyring=load_keyring(tmp_path / "keys"))
    with pytest.raises(ArtifactUntrusted, match="signature does not match"):
        reader.get(digest)
    assert reader.preview(digest)["kind"] == "untrusted"
    assert not marker.exists()
    # And the genuine one, rewritten in place with other bytes, no longer matches its name.
    s3fs_client.pipe_file(key, forged)
    from jupyter_flow.core.errors import ArtifactCorrupt

    with pytest.raises(ArtifactCorrupt):
        reader.get(genuine.digest)
    assert not marker.exists()


def workflow(n):
    """numbers -> as_set -> summary (three tasks; the set is a signed pickle)."""
    data = ops.numbers(n)
    return ops.summary(data, ops.as_set(data))


def test_cluster_workers_write_to_s3_and_a_rerun_restores_from_it(s3_flow, bucket, s3fs_client, s3_server):
    jf = s3_flow
    first = jf.run(workflow(10), name="on-s3")
    assert first.status == "SUCCESS", [(t.name, t.error) for t in first.tasks]
    result = first.result()
    assert (result["total"], result["distinct"]) == (45, 10)
    assert result["pid"] != os.getpid() and result["has_credentials"]  # a worker, which found them in its env
    stored = objects(s3fs_client, bucket)
    for task in first.tasks:
        assert task.status == "SUCCESS" and task.outputs
        for digest in task.outputs.values():
            assert digest in stored, f"{task.name}'s output {digest} is not in s3://{bucket}/artifacts"
        assert task.provenance["pid"] != os.getpid()

    server_log = Path(s3_server["log"])
    seen = server_log.stat().st_size
    again = jf.run(workflow(10), name="on-s3")
    assert [t.status for t in again.tasks] == ["CACHED"] * 3
    assert again.result() == result
    # The value came from the bucket: the S3 server served the target's object just now.
    (target,) = [t for t in again.tasks if t.name == "summary"]
    digest = target.outputs["return"]
    with open(server_log, "rb") as log:
        log.seek(seen)
        requests = log.read().decode()
    assert f"GET /{bucket}/artifacts/{digest[:2]}/{digest} " in requests, requests[-2000:]


BATCH_CELLS = [
    ("%load_ext jupyter_flow\nimport jupyter_flow as jf", None),
    ("lr = 0.1", ["parameters"]),
    ("%%flow train\nscore = round(1 - lr, 6)", None),
    ("jf.record('accuracy', score)", None),
]


def test_a_batch_from_the_cli_keeps_its_artifacts_on_s3(s3_flow, s3_cluster, bucket, s3fs_client, tmp_path):
    notebook = write_notebook(tmp_path / "sweep.ipynb", BATCH_CELLS)
    grid = tmp_path / "grid.yaml"
    grid.write_text("lr: [0.25, 0.5]\n")
    summary, done = flow_json("batch", str(notebook), "--grid", str(grid), "--parallel", "2",
                              "--cluster", s3_cluster.scheduler_address)
    assert summary["status"] == "SUCCESS", done.stderr
    assert sorted(e["accuracy"] for e in summary["executions"]) == [0.5, 0.75]

    from jupyter_flow.artifacts import ArtifactStore
    from jupyter_flow.artifacts.keyring import load_keyring

    artifacts = ArtifactStore(f"s3://{bucket}/artifacts", keyring=load_keyring())
    stored = objects(s3fs_client, bucket)
    executions, _ = flow_json("runs", "--parent", summary["batch"])
    assert len(executions) == 2
    for execution in executions:
        output = execution["outputs"]["output_notebook"]
        assert output in stored  # the executed notebook is an object in the bucket
        executed = artifacts.get(output)
        assert b"injected-parameters" in (executed if isinstance(executed, bytes) else executed.encode())
        (cell_run,) = flow_json("runs", "--parent", execution["id"])[0]
        shown, _ = flow_json("show", cell_run["id"])
        (task,) = shown["tasks"]
        assert task["status"] == "SUCCESS" and set(task["outputs"].values()) <= set(stored)

    again, done = flow_json("batch", str(notebook), "--grid", str(grid), "--parallel", "2",
                            "--cluster", s3_cluster.scheduler_address)
    assert again["status"] == "SUCCESS" and "· ran 0 · cached 1 · failed 0" in done.stderr


def test_cache_ls_and_gc_on_s3(s3_flow, bucket, s3fs_client, tmp_path):
    jf = s3_flow
    kept = jf.run(workflow(4), name="kept")
    dropped = jf.run(workflow(5), name="dropped")
    assert kept.status == dropped.status == "SUCCESS"
    jf.pin(kept.id)
    # An object no run refers to (a worker wrote it, then its client died).
    from jupyter_flow.artifacts import ArtifactStore
    from jupyter_flow.artifacts.keyring import load_keyring

    stray = ArtifactStore(f"s3://{bucket}/artifacts", keyring=load_keyring()).put({"stray": True}).digest

    entries, _ = flow_json("cache", "ls")
    stored = objects(s3fs_client, bucket)
    listed = {d for e in entries for d in e["outputs"].values()}
    assert {t.name for t in kept.tasks} == {e["op_name"] for e in entries}
    assert len(entries) == 6 and listed <= set(stored) and stray not in listed
    for entry in entries:  # sizes as the objects in the bucket have them
        assert entry["size"] == sum(stored[d] for d in set(entry["outputs"].values()))

    kept_outputs = {d for t in kept.tasks for d in t.outputs.values()}
    dropped_outputs = {d for t in dropped.tasks for d in t.outputs.values()} - kept_outputs
    done = flow("cache", "gc", "--older-than", "0s")
    assert done.returncode == 0, done.stderr
    after = objects(s3fs_client, bucket)
    assert stray not in after  # gone from the bucket, not only from the store
    assert not dropped_outputs & set(after)
    assert kept_outputs <= set(after)
    entries, _ = flow_json("cache", "ls")
    assert {d for e in entries for d in e["outputs"].values()} == kept_outputs
    # What gc kept still restores.
    again = jf.run(workflow(4))
    assert [t.status for t in again.tasks] == ["CACHED"] * 3


def test_the_secret_key_is_never_stored_logged_or_printed(s3_flow, s3_cluster, bucket, s3fs_client, flow_home,
                                                          s3_server, tmp_path, caplog):
    import logging

    jf = s3_flow
    caplog.set_level(logging.DEBUG)
    run = jf.run(workflow(3), name="secret-check")
    assert run.status == "SUCCESS" and run.result()["has_credentials"]
    notebook = write_notebook(tmp_path / "one.ipynb", BATCH_CELLS)
    outputs = [flow("batch", str(notebook), "-p", "lr", "0.3", "--cluster", s3_cluster.scheduler_address, "--json")]
    assert outputs[0].returncode == 0, outputs[0].stderr
    batch = json.loads(outputs[0].stdout)["batch"]
    for args in (["runs", "--json", "--limit", "100"], ["show", run.id, "--json"], ["show", batch, "--json"],
                 ["show", run.id], ["cache", "ls", "--json"], ["cache", "ls"], ["clusters", "--json"],
                 ["lineage", run.id, "--json"], ["cache", "gc", "--older-than", "1d"]):
        outputs.append(flow(*args))
        assert outputs[-1].returncode == 0, (args, outputs[-1].stderr)
    assert len(objects(s3fs_client, bucket)) >= 4  # the work really went to S3

    needle = SECRET.encode()
    # The SQLite file (and its WAL), the user's keys, every file this test made on this machine.
    files = [p for p in Path(tmp_path).rglob("*") if p.is_file()]
    assert {"flow.db", "signing.key"} <= {p.name for p in files}, sorted(p.name for p in files)
    assert [str(p) for p in files if needle in p.read_bytes()] == []
    # Run and task records as Python and the CLI give them, CLI output, logs of this process
    # and of the workers, every object in the bucket.
    records = [_public(r) for r in jf.runs(limit=100)]
    assert len(records) >= 4 and SECRET not in json.dumps(records, default=str)
    for done in outputs:
        assert SECRET not in done.stdout and SECRET not in done.stderr
    assert SECRET not in caplog.text
    assert SECRET not in json.dumps(s3_cluster.get_logs(), default=str)
    for path in s3fs_client.find(bucket):
        assert needle not in s3fs_client.cat_file(path), path
    # The S3 server saw the signed requests; the secret itself never travels.
    server_log = Path(s3_server["log"]).read_bytes()
    assert f"PUT /{bucket}/artifacts/".encode() in server_log and needle not in server_log


def _public(run) -> dict:
    """A run and its tasks as the Python API shows them."""
    fields = ("id", "name", "kind", "status", "params", "metrics", "error", "cluster", "notebook")
    return {**{name: getattr(run, name) for name in fields},
            "tasks": [{name: getattr(task, name) for name in task.__slots__} for task in run.tasks]}


ROUND_TRIP = ("import sys; from jupyter_flow.artifacts import ArtifactStore; store = ArtifactStore(sys.argv[1]); "
              "print(store.get(store.put({'from': 'a child'}).digest))")


def test_credentials_come_from_the_users_aws_files_too(bucket, s3_credentials, tmp_path):
    # The same process with the keys in ~/.aws/credentials instead of the environment (the
    # other standard place), and with none anywhere: jupyter_flow is given no keys either way.
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    url = f"s3://{bucket}/artifacts"
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(f"[default]\naws_access_key_id = {s3_credentials['AWS_ACCESS_KEY_ID']}\n"
                           f"aws_secret_access_key = {SECRET}\n")
    from_file = subprocess.run([sys.executable, "-c", ROUND_TRIP, url], capture_output=True, text=True, timeout=120,
                               env=dict(env, AWS_SHARED_CREDENTIALS_FILE=str(credentials)))
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout.strip() == "{'from': 'a child'}"
    without = subprocess.run([sys.executable, "-c", ROUND_TRIP, url], capture_output=True, text=True, timeout=120,
                             env=env)
    assert without.returncode != 0 and "Unable to locate credentials" in without.stderr
    assert SECRET not in without.stderr
