"""Ops the gateway tests run on workers a dask-gateway-server starts."""

import os
import signal
from pathlib import Path

import jupyter_flow as jf


@jf.op
def where(x):
    """What a gateway worker sees: the image option's variable and its gateway cluster."""
    return {"x": x, "image": os.environ.get("FLOW_IMAGE"),
            "cluster": os.environ.get("DASK_GATEWAY_CLUSTER_NAME"), "pid": os.getpid()}


@jf.op
def square(x):
    return x * x


@jf.op(resources={"GPU": 1})
def on_gpu(x):
    from distributed import get_worker

    return {"value": 2 * x, "resources": dict(get_worker().state.total_resources)}


@jf.op
def dies_once(x, marker):
    """Kills its own worker process the first time, as an evicted or OOM-killed worker dies."""
    if not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return x + 1
