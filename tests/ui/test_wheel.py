"""The built wheel carries the sidebar prebuilt: it installs and is found where no Node exists."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXT = "share/jupyter/labextensions/jupyter-flow"


def test_wheel_ships_the_prebuilt_extension_and_installs_without_node(tmp_path):
    # The installed build tools are used (CI's setup already built js/ once), so this
    # checks the packaging, not a second JavaScript build.
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = tmp_path.glob("jupyter_flow-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    data = f"jupyter_flow-0.1.0.data/data/{EXT}"
    assert f"{data}/package.json" in names and f"{data}/install.json" in names
    assert any(n.startswith(f"{data}/static/remoteEntry.") for n in names)
    assert "jupyter_flow-0.1.0.data/data/etc/jupyter/jupyter_server_config.d/jupyter_flow.json" in names

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # Nothing but the venv on PATH: no node, npm or jlpm.
    no_node = str(env_dir / "bin")
    assert shutil.which("node", path=no_node) is None
    env = {"PATH": no_node, "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--force-reinstall",
                              "--ignore-installed", "-q", str(wheel)], env=env, capture_output=True, text=True,
                             timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    ext = env_dir / EXT
    package = json.loads((ext / "package.json").read_text())
    assert package["name"] == "jupyter-flow"
    assert list((ext / "static").glob("remoteEntry.*.js"))
    assert (env_dir / "etc/jupyter/jupyter_server_config.d/jupyter_flow.json").exists()
    listed = subprocess.run([str(python), "-m", "jupyterlab.labextensions", "list"], env=env,
                            capture_output=True, text=True, timeout=120)
    text = listed.stdout + listed.stderr
    assert "jupyter-flow" in text and "enabled" in text and "OK" in text, text
    # Found in the venv's own labextensions directory, from the wheel's files.
    assert str(env_dir / "share/jupyter/labextensions") in text, text
