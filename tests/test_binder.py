"""The Binder environment's Python requirements install into a fresh venv and run the quickstart."""

import os
import subprocess
import venv
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def binder_requirements() -> list[str]:
    env = yaml.safe_load((ROOT / "binder" / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return [str(r) for r in pip]


def test_binder_files_are_executable_and_complete():
    for name in ("postBuild", "start"):
        assert os.access(ROOT / "binder" / name, os.X_OK), name
    requirements = " ".join(binder_requirements())
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dependency in project["dependencies"]:
        name = dependency.split(">")[0].split("=")[0].split("<")[0].strip()
        assert name in requirements, f"{name} is a dependency but not in binder/environment.yml"


def test_quickstart_runs_in_a_fresh_binder_venv(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              *binder_requirements()], capture_output=True, text=True, timeout=1200)
    assert install.returncode == 0, install.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER_FLOW", "DASK_", "PYTHON"))}
    env.update({"PYTHONPATH": str(ROOT), "JUPYTER_FLOW_HOME": str(tmp_path / "home"),
                "PATH": f"{env_dir / 'bin'}:{env['PATH']}", "VIRTUAL_ENV": str(env_dir)})
    # The venv's own kernel: papermill's python3 kernel resolves to the running interpreter.
    out = tmp_path / "quickstart-out.ipynb"
    run = subprocess.run(
        [str(python), "-m", "papermill", str(ROOT / "notebooks" / "01-quickstart.ipynb"), str(out),
         "--cwd", str(tmp_path), "-k", "python3", "--no-progress-bar"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "distinct words" in out.read_text()
    check = subprocess.run([str(python), "-c", "import jupyter_flow, sys; print(jupyter_flow.__file__, sys.prefix)"],
                           env=env, capture_output=True, text=True, check=True)
    assert str(env_dir) in check.stdout  # it really ran in the fresh environment
