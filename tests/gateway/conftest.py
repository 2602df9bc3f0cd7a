"""A real dask-gateway-server on loopback (local-process backend) for the `gateway` profile.

The server runs as this user (``UnsafeLocalBackend``: the local backend proper switches to
each authenticated user, which needs root and real accounts) with a simple password
authenticator and the cluster options a deployment would offer: worker cores and memory,
an image name (here it only sets ``FLOW_IMAGE`` on the workers, as a container image would
fix their environment) and a number of GPUs each worker declares as the Dask resource
``GPU`` (stand-ins: this machine has none; on Kubernetes the same option would also ask
for ``nvidia.com/gpu``).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

PASSWORD = secrets.token_hex(8)

CONFIG = """
import sys
from dask_gateway_server.options import Float, Integer, Options, String

c.DaskGateway.address = "127.0.0.1:{api}"
c.Proxy.address = "127.0.0.1:{http}"
c.Proxy.tcp_address = "127.0.0.1:{tcp}"
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.SimpleAuthenticator.password = {password!r}
# distributed no longer installs the dask-scheduler / dask-worker scripts
c.ClusterConfig.scheduler_cmd = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
c.ClusterConfig.worker_cmd = [sys.executable, "-m", "distributed.cli.dask_worker"]
c.ClusterConfig.adaptive_period = 1.0
c.ClusterConfig.worker_threads = 1
c.UnsafeLocalBackend.inherited_environment = [
    "PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "HOME"]


def options_handler(options):
    env = {{"FLOW_IMAGE": options.image}}
    if options.worker_gpus:
        # a dict value: dask config lower-cases names spelled in the variable's name
        env["DASK_DISTRIBUTED__WORKER__RESOURCES"] = repr({{"GPU": options.worker_gpus}})
    return {{"worker_cores": options.worker_cores,
            "worker_memory": int(options.worker_memory * 2**30),
            "environment": env}}


c.Backend.cluster_options = Options(
    Integer("worker_cores", 1, min=1, max=2, label="Worker cores"),
    Float("worker_memory", 1.0, min=0.25, max=2, label="Worker memory (GiB)"),
    String("image", "jupyter-flow:local", label="Image"),
    Integer("worker_gpus", 0, min=0, max=1, label="GPUs per worker"),
    handler=options_handler,
)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gateway_server(tmp_path_factory):
    """Start dask-gateway-server; yield its public address, proxy address and password."""
    pytest.importorskip("dask_gateway_server", reason="install the test extra (dask-gateway-server)")
    root = tmp_path_factory.mktemp("gateway")
    api, http, tcp = _free_port(), _free_port(), _free_port()
    (root / "config.py").write_text(textwrap.dedent(CONFIG.format(api=api, http=http, tcp=tcp,
                                                                  password=PASSWORD)))
    log = open(root / "server.log", "w")
    env = dict(os.environ)
    # Workers import jupyter_flow from the same tree as this test session.
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(_repo_root()), env.get("PYTHONPATH", "")] if p)
    proc = subprocess.Popen([sys.executable, "-m", "dask_gateway_server", "-f", str(root / "config.py")],
                            cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    address = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{address}/api/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("dask-gateway-server did not start:\n" + (root / "server.log").read_text()[-3000:])
        time.sleep(0.3)
    yield {"address": address, "proxy_address": f"gateway://127.0.0.1:{tcp}", "password": PASSWORD,
           "log": root / "server.log"}
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]


@pytest.fixture
def gateway_config(gateway_server):
    """Dask config a user would write for the gateway (~/.config/dask/gateway.yaml)."""
    import dask
    import dask_gateway  # noqa: F401  (its defaults first: leaving the block restores them)

    with dask.config.set({
        "gateway.address": gateway_server["address"],
        "gateway.proxy-address": gateway_server["proxy_address"],
        "gateway.auth.type": "basic",
        "gateway.auth.kwargs": {"username": "alice", "password": gateway_server["password"]},
    }):
        yield gateway_server


@pytest.fixture
def jf_gateway(flow_home, gateway_config):
    """``jupyter_flow`` with a fresh store; each test picks its gateway options."""
    import jupyter_flow
    from jupyter_flow.deploy import cluster as clusters

    yield jupyter_flow
    clusters.close_all()
    clusters._current[0] = None
    clusters._current_overrides.clear()


def gateway_clusters(gateway_server) -> list:
    """The clusters the gateway runs for alice (as its REST API lists them)."""
    from dask_gateway import Gateway
    from dask_gateway.auth import BasicAuth

    with Gateway(gateway_server["address"], proxy_address=gateway_server["proxy_address"],
                 auth=BasicAuth("alice", gateway_server["password"])) as gateway:
        return gateway.list_clusters()
