"""`jupyter flow …` through a real subprocess against a real store."""

import json
import os
import subprocess
import sys

import pytest

from .engine import ops


def flow(env, *args, check=True):
    result = subprocess.run([sys.executable, "-m", "jupyter_flow.cli", *args], env=env,
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def two_runs(jf):
    first = jf.run(ops.add(ops.add(1, 2), 3), name="alpha")
    second = jf.run(ops.boom(7), name="beta")
    from jupyter_flow.engine.runtime import get_engine

    get_engine().writer.flush()
    return first, second


def test_runs_and_show(two_runs, subprocess_env):
    first, second = two_runs
    listed = json.loads(flow(subprocess_env, "runs", "--json").stdout)
    assert [r["name"] for r in listed] == ["beta", "alpha"]
    assert listed[1]["task_counts"] == {"SUCCESS": 2}
    text = flow(subprocess_env, "runs", "--status", "FAILED").stdout
    assert "beta" in text and "alpha" not in text
    shown = flow(subprocess_env, "show", second.id).stdout
    assert "FAILED" in shown and "boom" in shown and "ValueError" in shown
    data = json.loads(flow(subprocess_env, "show", first.id, "--json").stdout)
    assert data["run"]["id"] == first.id and len(data["tasks"]) == 2


def test_errors_are_one_line_with_nonzero_exit(two_runs, subprocess_env):
    for args in (["show", "nope"], ["lineage", "nope"], ["cache", "gc", "--older-than", "soon"],
                 ["cache", "gc"], ["pin", "nope"], ["rm", "nope"]):
        result = flow(subprocess_env, *args, check=False)
        assert result.returncode != 0, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "error" in lines[0], (args, result.stderr)


def test_lineage_of_task_artifact_and_run(two_runs, subprocess_env):
    first, _ = two_runs
    outer = next(t for t in first.tasks if t.upstream)
    inner = next(t for t in first.tasks if not t.upstream)
    data = json.loads(flow(subprocess_env, "lineage", outer.id, "--json").stdout)
    assert [u["id"] for u in data["upstream"]] == [inner.id]
    digest = inner.outputs["return"]
    data = json.loads(flow(subprocess_env, "lineage", digest, "--json").stdout)
    assert data["produced_by"][0]["task"]["id"] == inner.id
    assert data["produced_by"][0]["downstream"][0]["id"] == outer.id
    data = json.loads(flow(subprocess_env, "lineage", first.id, "--json").stdout)
    assert data["edges"] == [{"from": inner.id, "to": outer.id}]
    assert "->" in flow(subprocess_env, "lineage", inner.id).stdout


def test_prov_export_validates_against_the_prov_json_schema(two_runs, subprocess_env, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    import prov

    first, _ = two_runs
    out = tmp_path / "run.prov.json"
    flow(subprocess_env, "prov", first.id, "-o", str(out))
    document = json.loads(out.read_text())
    schema_path = os.path.join(os.path.dirname(prov.__file__), "tests", "schemas", "prov-json.schema.json")
    with open(schema_path) as handle:
        schema = json.load(handle)
    jsonschema.validate(document, schema)
    assert len(document["activity"]) == 3  # the run and its two tasks
    assert len(document["wasGeneratedBy"]) == 2
    assert len(document["used"]) == 1
    from prov.model import ProvDocument

    parsed = ProvDocument.deserialize(content=out.read_text(), format="json")
    assert len(list(parsed.get_records())) > 5


def test_cache_ls_gc_keeps_pinned_runs(jf, subprocess_env, flow_home):
    kept = jf.run(ops.add(100, 1), name="kept")
    dropped = jf.run(ops.add(200, 2), name="dropped")
    flow(subprocess_env, "pin", kept.id)
    entries = json.loads(flow(subprocess_env, "cache", "ls", "--json").stdout)
    assert len(entries) == 2
    dry = flow(subprocess_env, "cache", "gc", "--max-size", "0", "--dry-run").stdout
    assert "would remove 1 artifacts" in dry  # the dropped run's output (recent snapshots stay)
    flow(subprocess_env, "cache", "gc", "--max-size", "0")
    files = {p.name for p in (flow_home / "artifacts").rglob("*") if p.is_file()}
    assert kept.tasks[0].outputs["return"] in files
    assert dropped.tasks[0].outputs["return"] not in files
    entries = json.loads(flow(subprocess_env, "cache", "ls", "--json").stdout)
    assert [e["op_name"] for e in entries] == ["add"] and len(entries) == 1
    # The collected op recomputes; the pinned one is still a cache hit.
    assert [t.status for t in jf.run(ops.add(100, 1)).tasks] == ["CACHED"]
    assert [t.status for t in jf.run(ops.add(200, 2)).tasks] == ["SUCCESS"]


def test_cache_ls_shows_sizes_and_the_total(jf, subprocess_env):
    run = jf.run(ops.multi_out(7))
    jf.run(ops.load(1000))
    entries = json.loads(flow(subprocess_env, "cache", "ls", "--json").stdout)
    sizes = {e["op_name"]: e["size"] for e in entries}
    meta = run.tasks[0].provenance["outputs"]
    assert sizes["multi_out"] == meta["a"]["size"] + meta["b"]["size"] and sizes["load"] > 3000
    text = flow(subprocess_env, "cache", "ls").stdout
    assert "SIZE" in text.splitlines()[0]
    total = sizes["multi_out"] + sizes["load"]
    assert f"2 entries, {total / 1024:.1f} KiB in 3 artifacts" in text


def test_pin_rm_db_upgrade_clusters(two_runs, subprocess_env):
    first, second = two_runs
    flow(subprocess_env, "rm", second.id)
    names = [r["name"] for r in json.loads(flow(subprocess_env, "runs", "--json").stdout)]
    assert names == ["alpha"]
    assert "up to date" in flow(subprocess_env, "db", "upgrade").stdout
    clusters = json.loads(flow(subprocess_env, "clusters", "--json").stdout)
    assert "local" in [p["name"] for p in clusters["profiles"]]
    assert clusters["in_use"], "the session cluster was registered by the runs"


def test_jupyter_flow_command_is_installed(subprocess_env):
    result = subprocess.run(["jupyter", "flow", "--help"], env=subprocess_env, capture_output=True, text=True)
    assert result.returncode == 0 and "lineage" in result.stdout


def test_cache_gc_keeps_the_snapshots_resume_needs(jf, subprocess_env, flow_home, tmp_path):
    marker, calls = tmp_path / "hold", tmp_path / "calls"
    marker.write_text("")
    running = jf.run(ops.hold_while(str(marker), str(calls)), wait=False)
    finished = jf.run(ops.add(7, 8), name="recent")
    from tests.waiting import wait_for

    wait_for(lambda: jf.get_run(running.id)._row.get("snapshot"))
    out = flow(subprocess_env, "cache", "gc", "--older-than", "0s", "--max-size", "0")
    assert out.returncode == 0, out.stderr
    for run in (running, finished):
        snapshot = jf.get_run(run.id)._row["snapshot"]
        assert (flow_home / "artifacts" / snapshot[:2] / snapshot).exists(), run.name
    marker.unlink()
    assert running.wait(60).status == "SUCCESS"
    assert jf.resume(finished.id).status == "SUCCESS"   # restored, not "corrupt or missing"
