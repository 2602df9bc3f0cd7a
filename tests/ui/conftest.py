"""A real JupyterLab (subprocess on 127.0.0.1) and a real Chromium driven by Playwright."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.waiting import stop

CHROMIUM = os.environ.get("FLOW_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-dev-shm-usage"]
LABEXTENSION = Path(__file__).resolve().parents[2] / "jupyter_flow" / "labextension" / "package.json"


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    flow_home: Path
    log: Path

    def api(self, path: str) -> dict:
        request = urllib.request.Request(f"{self.url}jupyter-flow/api/{path}",
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_lab(base: Path, healthy: bool = True, args: tuple[str, ...] = (), env: dict | None = None,
                server_extension: bool = True):
    """``jupyter lab`` with a token, ``base/flow`` as JUPYTER_FLOW_HOME and no user settings,
    loading this checkout's build of the sidebar. Ready once the extension answers: health
    200, or (``healthy=False``, a store prepared to be unusable) a JSON 503. ``args`` go on
    its command line (``--FlowApp.scheduler_interval=0.5``), ``env`` into its environment.
    ``server_extension=False``: the sidebar without jupyter_flow's server extension (disabled
    in the lab's config, as after a broken install); ready once Jupyter's own API answers."""
    if not LABEXTENSION.exists():
        pytest.fail("the JupyterLab extension is not built: run `pip install -e .` (builds js/)")
    root, home, config = base / "notebooks", base / "flow", base / "config"
    root.mkdir()
    (config / "labconfig").mkdir(parents=True)
    # No "news?" toast over the page.
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    if not server_extension:
        (config / "jupyter_server_config.json").write_text(
            json.dumps({"ServerApp": {"jpserver_extensions": {"jupyter_flow": False}}}))
    # JUPYTER_PATH comes first among the labextension directories, so the lab shows this
    # checkout's build rather than whichever copy pip installed under sys.prefix.
    jupyter_path = base / "jupyter_path"
    shutil.copytree(LABEXTENSION.parent, jupyter_path / "labextensions" / "jupyter-flow")
    token, port = secrets.token_hex(16), _free_port()
    env = dict(os.environ, **(env or {}), JUPYTER_FLOW_HOME=str(home), JUPYTER_CONFIG_DIR=str(config),
               JUPYTER_PATH=str(jupyter_path),
               JUPYTERLAB_SETTINGS_DIR=str(base / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"))
    for name in ("JUPYTER_FLOW_DB", "JUPYTER_FLOW_ARTIFACTS", "JUPYTER_FLOW_RUN_ID"):
        env.pop(name, None)
    log = base / "jupyter-lab.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", *args]
            + (["--allow-root"] if os.geteuid() == 0 else []),
            env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Lab(f"http://127.0.0.1:{port}/", token, root, home, log)
    try:
        deadline = time.monotonic() + 90
        while True:  # the server has no readiness event to wait on; its health route is one
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if not server_extension:
                    urllib.request.urlopen(urllib.request.Request(
                        f"{server.url}api/status", headers={"Authorization": f"token {token}"}), timeout=10)
                    break
                if server.api("health")["status"] == "ok":
                    break
            except urllib.error.HTTPError as err:
                if not healthy and err.code == 503 and "json" in err.headers.get("Content-Type", ""):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer within 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        stop(proc)


def open_lab(browser, lab, width=1440, height=900):
    """A new page on the lab, once the Flow sidebar's tab is there."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(30_000)
    page.goto(f"{lab.url}lab?token={lab.token}")
    tab = page.locator('.jp-SideBar li[data-id="jupyter-flow-sidebar"]')
    expect(tab).to_have_attribute("title", "Flow", timeout=60_000)
    return page


def run_script(lab, filename: str, source: str, *args: str) -> str:
    """Run ``source`` as a script in a child process on the lab's store; the last line it
    prints (a run id). A file, not ``-c``: an op's source is read from the file defining it."""
    env = dict(os.environ, JUPYTER_FLOW_HOME=str(lab.flow_home))
    for var in ("JUPYTER_FLOW_DB", "JUPYTER_FLOW_ARTIFACTS", "JUPYTER_FLOW_RUN_ID"):
        env.pop(var, None)
    script = lab.flow_home / filename
    script.write_text(source)
    done = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True,
                          timeout=180, cwd=str(lab.flow_home))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def show_flow_sidebar(page):
    """Open the Flow sidebar (at its default width) once the lab has restored its layout: an
    earlier page of the same lab may have saved it open, and clicking its tab would close it."""
    from playwright.sync_api import expect

    tab = page.locator('.jp-SideBar li[data-id="jupyter-flow-sidebar"]')
    expect(tab).to_have_attribute("title", "Flow", timeout=60_000)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0, timeout=60_000)
    sidebar = page.locator("#jupyter-flow-sidebar")
    if not sidebar.is_visible():
        tab.click()
    expect(sidebar).to_be_visible()
    return sidebar


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A lab with a fresh, empty store."""
    with running_lab(tmp_path_factory.mktemp("lab")) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium (``playwright install`` cannot download browsers here)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def screenshots(tmp_path):
    """Where a test saves screenshots (kept with the pytest output)."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder
