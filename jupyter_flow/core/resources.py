"""What an op asks of the machine that runs it: cores, memory, walltime, GPUs, and any
other Dask worker resource.

``cores``, ``memory`` and ``walltime`` describe a job shape: on a Slurm profile with
pools they choose the pool whose jobs are large enough; elsewhere they are advisory (a
worker of a LocalCluster declares none of them, so a task must not wait for them).
``GPU`` and any other name are Dask worker resources: a task asking for them runs only
on a worker that declares them.
"""

from __future__ import annotations

import numbers
import re
from typing import Any

from .errors import FlowError

# The job-shape vocabulary: strict only where pools turn them into a placement.
SHAPE = ("cores", "memory", "walltime")
GPU = "GPU"
EXAMPLE = "{'cores': 4, 'memory': '16GB', 'walltime': '02:00:00', 'GPU': 1}"

_SLURM_TIME = re.compile(
    r"^(?:(?P<days>\d+)-(?P<dh>\d+)(?::(?P<dm>\d+)(?::(?P<ds>\d+))?)?"   # D-H, D-H:M, D-H:M:S
    r"|(?P<h>\d+):(?P<m>\d+):(?P<s>\d+)"                                    # H:M:S
    r"|(?P<mm>\d+):(?P<ss>\d+)"                                             # M:S
    r"|(?P<minutes>\d+))$"                                                  # M
)


def memory_bytes(value: Any) -> int:
    """Bytes of a memory amount: ``"16GB"``, ``"512 MiB"`` or a number of bytes.

    >>> memory_bytes("16GB"), memory_bytes("1 GiB"), memory_bytes(1000)
    (16000000000, 1073741824, 1000)
    """
    from dask.utils import parse_bytes

    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, numbers.Real):
        amount = int(value)
    elif isinstance(value, str):
        amount = parse_bytes(value.strip())
    else:
        raise ValueError(value)
    if amount <= 0:
        raise ValueError(value)
    return amount


def walltime_seconds(value: Any) -> int:
    """Seconds of a Slurm time limit: ``"02:00:00"``, ``"1-12:00:00"``, ``"30:00"``, ``"90"`` (minutes).

    >>> walltime_seconds("02:00:00"), walltime_seconds("1-00:30"), walltime_seconds("30")
    (7200, 88200, 1800)
    """
    if not isinstance(value, str):
        raise ValueError(value)
    match = _SLURM_TIME.match(value.strip())
    if match is None:
        raise ValueError(value)
    part = {k: int(v) for k, v in match.groupdict().items() if v is not None}
    if "days" in part:
        seconds = part["days"] * 86400 + part["dh"] * 3600 + part.get("dm", 0) * 60 + part.get("ds", 0)
    elif "h" in part:
        seconds = part["h"] * 3600 + part["m"] * 60 + part["s"]
    elif "mm" in part:
        seconds = part["mm"] * 60 + part["ss"]
    else:
        seconds = part["minutes"] * 60
    if seconds <= 0:
        raise ValueError(value)
    return seconds


def normalise(resources: dict | None, label: str, error: type[FlowError] = FlowError) -> dict[str, Any]:
    """Check an op's resource request; returns it with numbers where numbers are meant.

    ``label`` names the op or cell in messages ("op 'train'", "cell 'fit'").

    >>> normalise({"cores": 4, "memory": "16GB", "GPU": 1}, "op 'train'")
    {'cores': 4, 'memory': '16GB', 'GPU': 1}
    >>> normalise({"cores": -1}, "op 'train'")
    Traceback (most recent call last):
    ...
    jupyter_flow.core.errors.FlowError: op 'train': resources: cores must be a whole number >= 1, got -1
    """
    if resources is None:
        return {}
    if not isinstance(resources, dict):
        raise error(f"{label}: resources must be a dict such as {EXAMPLE}, got {type(resources).__name__}")
    out: dict[str, Any] = {}
    for name, amount in resources.items():
        if not isinstance(name, str) or not name:
            raise error(f"{label}: resources must map names to amounts, e.g. {EXAMPLE}; got the name {name!r}")
        where = f"{label}: resources: {name}"
        if name == "memory":
            try:
                memory_bytes(amount)
            except (ValueError, TypeError):
                raise error(f"{where} must be an amount such as '16GB' or '512MiB', got {amount!r}") from None
            out[name] = amount.strip() if isinstance(amount, str) else int(amount)
        elif name == "walltime":
            try:
                walltime_seconds(amount)
            except (ValueError, TypeError):
                raise error(f"{where} must be a Slurm time such as '02:00:00', '1-00:00:00' or '30:00', "
                            f"got {amount!r}") from None
            out[name] = amount.strip()
        elif name == "cores":
            if (isinstance(amount, bool) or not isinstance(amount, numbers.Real) or amount < 1
                    or float(amount) != int(amount)):
                raise error(f"{where} must be a whole number >= 1, got {amount!r}")
            out[name] = int(amount)
        else:
            if isinstance(amount, bool) or not isinstance(amount, numbers.Real) or amount <= 0:
                raise error(f"{where} must be a positive number (a Dask worker resource such as "
                            f"GPU=1), got {amount!r}")
            out[name] = int(amount) if float(amount).is_integer() else float(amount)
    return out


def strict(resources: dict) -> dict[str, float]:
    """The part of a request that is a Dask worker resource (everything but the job shape).

    >>> strict({"cores": 4, "memory": "16GB", "GPU": 1})
    {'GPU': 1}
    """
    return {name: amount for name, amount in resources.items() if name not in SHAPE}


def describe(resources: dict) -> str:
    """``cores=4, memory=16GB, GPU=1`` for messages."""
    return ", ".join(f"{name}={amount:g}" if isinstance(amount, numbers.Real) else f"{name}={amount}"
                     for name, amount in resources.items())
