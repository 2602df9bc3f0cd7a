"""The demo notebooks run (papermill, real kernels), and an exported notebook hits the same cache."""

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _env(subprocess_env):
    return dict(subprocess_env, DASK_FLOW__DEFAULT_CLUSTER=subprocess_env["FLOW_TEST_SCHEDULER"])


def _papermill(env, source: Path, workdir: Path) -> Path:
    output = workdir / f"out-{source.name}"
    result = subprocess.run(
        [sys.executable, "-m", "papermill", str(workdir / source.name), str(output), "--no-progress-bar",
         "--cwd", str(workdir), "-k", "python3"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return output


@pytest.mark.parametrize("name", ["01-quickstart.ipynb", "04-sweep-and-caching.ipynb", "05-batch.ipynb",
                                  "06-provenance-and-lineage.ipynb", "09-fanout-and-shell.ipynb",
                                  "10-classifier-comparison.ipynb"])
def test_demo_notebook_runs(name, subprocess_env, tmp_path):
    work = tmp_path / "notebooks"
    work.mkdir()
    for needed in (name, "01-quickstart.ipynb"):
        shutil.copy(NOTEBOOKS / needed, work / needed)
    before = set(work.iterdir())
    # Twice, as a person does: the second run of a demo is its cached rerun.
    _papermill(_env(subprocess_env), NOTEBOOKS / name, work)
    _papermill(_env(subprocess_env), NOTEBOOKS / name, work)
    # Whatever it wrote next to itself is ignored by git: running the demos leaves the
    # repository clean (issue 17 point 9).
    written = sorted(p.name + ("/" if p.is_dir() else "") for p in set(work.iterdir()) - before)
    repo = NOTEBOOKS.parent
    for entry in written:
        ignored = subprocess.run(["git", "-C", str(repo), "check-ignore", "-q", "--no-index", f"notebooks/{entry}"])
        assert ignored.returncode == 0, f"{name} writes notebooks/{entry}, which notebooks/.gitignore does not ignore"


@pytest.mark.parametrize("name, ops", [("01-quickstart.ipynb", {"load", "count", "top"}),
                                       ("10-classifier-comparison.ipynb", {"datasets", "scores"})])
def test_export_reads_like_code_and_hits_the_notebooks_cache(name, ops, subprocess_env, tmp_path):
    """`jupyter flow export` (issue 19 point 5): each %%flow cell a function with its inputs as
    parameters and its outputs as return values, ordinary cells as statements, pyflakes-clean;
    running the script restores every op the notebook computed (the keys did not change
    because the code moved into functions), a --map cell included."""
    env = _env(subprocess_env)
    shutil.copy(NOTEBOOKS / name, tmp_path / name)
    _papermill(env, NOTEBOOKS / name, tmp_path)
    script = tmp_path / "flow.py"
    out = subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "export", name, "-o", str(script)],
                         env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "wrote" in out.stdout
    text = script.read_text()
    assert "nb.cell(" not in text  # no cell left as a string to replay
    tree = ast.parse(text)
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)
                 and any("nb.flow" in ast.unparse(d) for d in node.decorator_list)}
    assert len(functions) == len(ops)
    for function in functions.values():
        assert isinstance(function.body[-1], ast.Return)  # outputs are return values
    if name.startswith("01"):
        assert [a.arg for a in functions["top"].args.args] == ["counts", "top_n"]
        assert "top_words = top(counts, top_n)" in text
        assert "for word, n in top_words:" in text  # an ordinary cell stays a statement
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "F", "--isolated",
                           str(script)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    before = {r["id"] for r in _runs(env)}
    result = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    new_cell_runs = [r for r in _runs(env) if r["id"] not in before and r["kind"] == "cell"]
    assert {r["name"] for r in new_cell_runs} == ops
    from jupyter_flow.store import Store

    store = Store()
    statuses = {t["status"] for r in new_cell_runs for t in store.get_tasks(r["id"])}
    assert statuses == {"CACHED"}


def _runs(env):
    out = subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "runs", "--json", "--limit", "1000"],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _outputs(path: Path) -> str:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return "\n".join(str(out.get("data", {}).get("text/plain", "")) + out.get("text", "")
                     for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", []))


def test_the_resources_notebook_runs_unchanged_on_the_local_profile(subprocess_env, tmp_path):
    name = "08-resources-and-pools.ipynb"
    shutil.copy(NOTEBOOKS / name, tmp_path / name)
    text = _outputs(_papermill(_env(subprocess_env), NOTEBOOKS / name, tmp_path))
    assert "('local', 'no pools: job shapes are advisory')" in text
    assert "('SUCCESS', '6 samples, score" in text
    # Without pools a request larger than any job is advisory: the op runs.
    assert text.rstrip().endswith("'SUCCESS'")


def test_the_readme_sweep_of_notebook_04_sweeps_its_parameters(subprocess_env, tmp_path):
    """Notebook 04 declared no parameters, so its documented sweep had nothing to sweep
    (issue 17 point 9): the command in its parameters cell runs one execution per grid point,
    each with its own metric, and the executed notebooks stay out of the repository."""
    env = _env(subprocess_env)
    work = tmp_path / "notebooks"
    work.mkdir()
    for needed in ("04-sweep-and-caching.ipynb", "04-grid.yaml"):
        shutil.copy(NOTEBOOKS / needed, work / needed)
    result = subprocess.run(
        [sys.executable, "-m", "jupyter_flow.cli", "batch", "04-sweep-and-caching.ipynb", "--grid", "04-grid.yaml",
         "--parallel", "2", "--cluster", env["FLOW_TEST_SCHEDULER"], "--json"],
        env=env, cwd=work, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    summary = json.loads(result.stdout)
    points = sorted((e["n"], e["seed"]) for e in summary["executions"])
    assert points == [(1000, 1), (1000, 2), (4000, 1), (4000, 2)]
    assert len({e["best_score"] for e in summary["executions"]}) == 4  # each point its own data
    assert sorted(p.name for p in work.iterdir()) == ["04-grid.yaml", "04-sweep-and-caching.ipynb"]


def test_the_ported_classifier_comparison_maps_plots_caches_and_sweeps(subprocess_env, tmp_path):
    """A public scikit-learn example ported with `--map` and plots (notebook 10): its map cell
    shows one figure per dataset in dataset order, live and restored from the cache, and the
    batch its first cell documents runs one execution per noise level in parallel."""
    env = _env(subprocess_env)
    work = tmp_path / "notebooks"
    work.mkdir()
    for needed in ("10-classifier-comparison.ipynb", "10-grid.yaml"):
        shutil.copy(NOTEBOOKS / needed, work / needed)
    import nbformat

    def map_cell(executed: Path):
        nb = nbformat.read(executed, as_version=4)
        (cell,) = [c for c in nb.cells if c.source.startswith("%%flow scores --map datasets")]
        return cell

    for attempt in ("first", "cached"):
        cell = map_cell(_papermill(env, NOTEBOOKS / "10-classifier-comparison.ipynb", work))
        printed = [o.text for o in cell.outputs if o.output_type == "stream"]
        names = [line.split()[0] for text in printed for line in text.splitlines() if line.split()
                 and line.split()[0] in ("moons", "circles", "blobs")]
        assert names == ["moons", "circles", "blobs"], (attempt, printed)
        figures = [o for o in cell.outputs if o.output_type == "display_data" and "image/png" in o.data]
        assert len(figures) == 3, attempt
        if attempt == "cached":
            summary = next(o.data["text/plain"] for o in cell.outputs
                           if o.output_type == "display_data" and "scores: run" in o.data.get("text/plain", ""))
            assert "scores           CACHED" in summary and "SUCCESS    ran" not in summary, summary

    result = subprocess.run(
        [sys.executable, "-m", "jupyter_flow.cli", "batch", "10-classifier-comparison.ipynb", "-p", "n_samples", "150",
         "--grid", "10-grid.yaml", "--parallel", "2", "--cluster", env["FLOW_TEST_SCHEDULER"], "--json"],
        env=env, cwd=work, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    executions = json.loads(result.stdout)["executions"]
    assert sorted(e["noise"] for e in executions) == [0.1, 0.3, 0.5]
    by_noise = {e["noise"]: e["mean_score"] for e in executions}
    assert by_noise[0.1] > by_noise[0.5]  # noisier moons and circles are harder to separate
