"""A real S3 server on loopback (moto's server mode) for the artifact tests on S3.

Credentials go where every S3 client looks for them (the standard AWS environment
variables) and nowhere else: jupyter_flow is never given them, so its workers and CLI find
them the way they would find ``~/.aws/credentials`` or an instance role. The secret key is
random per session (``SECRET``), so a test can search everything jupyter_flow wrote for it.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import pytest

from tests.waiting import wait_for

ACCESS_KEY = "jupyter-flow-tests"
SECRET = "jf-secret-" + secrets.token_hex(16)
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, if only to say no
    except OSError:
        return False


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """``python -m moto.server`` on a free loopback port; its endpoint URL and log file."""
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: server.poll() is not None or _answers(endpoint), timeout=60)
        assert server.poll() is None, f"moto's S3 server did not start:\n{log_path.read_text()}"
        yield {"endpoint": endpoint, "log": log_path}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="session")
def s3_credentials(s3_server):
    """The standard AWS variables in this process's environment (so in every process it
    starts after this: Dask workers, the CLI, papermill kernels)."""
    values = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_ENDPOINT_URL": s3_server["endpoint"],
        "AWS_DEFAULT_REGION": REGION,
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in values.items():
            patch.setenv(name, value)
        # No ~/.aws file of the machine's user may stand in for the variables above.
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        patch.setenv("AWS_CONFIG_FILE", os.devnull)
        yield values


@pytest.fixture(scope="session")
def s3_cluster(s3_credentials):
    """A LocalCluster started once the credentials are set, so its workers inherit them."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0", processes=True, memory_limit="2GiB")
    yield cluster
    from jupyter_flow.deploy import cluster as clusters

    clusters.close_all()
    cluster.close()


@pytest.fixture
def s3fs_client(s3_credentials):
    """An s3fs filesystem that sees the bucket as it is now (no cached listings)."""
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)


@pytest.fixture
def bucket(s3fs_client):
    """A fresh, empty bucket for one test."""
    name = f"jf-{uuid.uuid4().hex[:12]}"
    s3fs_client.mkdir(name)
    return name


@pytest.fixture
def s3_flow(flow_home, bucket, s3_cluster, monkeypatch):
    """``jupyter_flow`` with a fresh SQLite store, artifacts at s3://<bucket>/artifacts and
    runs on the S3 test cluster."""
    import jupyter_flow
    from jupyter_flow.deploy import cluster as clusters

    monkeypatch.setenv("JUPYTER_FLOW_ARTIFACTS", f"s3://{bucket}/artifacts")
    jupyter_flow.cluster(s3_cluster.scheduler_address)
    yield jupyter_flow
    clusters._current[0] = None
    clusters._current_overrides.clear()
