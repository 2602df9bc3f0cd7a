"""What an op may ask for: cores, memory, walltime, GPUs and other worker resources."""

from __future__ import annotations

import pytest

import jupyter_flow as jf
from jupyter_flow.core.resources import memory_bytes, normalise, strict, walltime_seconds


def test_an_op_declares_cores_memory_walltime_and_gpus():
    @jf.op(resources={"cores": 4, "memory": "16GB", "walltime": "02:00:00", "GPU": 1, "FPGA": 0.5})
    def train(x):
        return x

    assert train.resources == {"cores": 4, "memory": "16GB", "walltime": "02:00:00", "GPU": 1, "FPGA": 0.5}
    # The job shape is not a Dask worker resource; GPU and other names are.
    assert strict(train.resources) == {"GPU": 1, "FPGA": 0.5}


@pytest.mark.parametrize("request_, field, hint", [
    ({"cores": -1}, "cores", "whole number >= 1"),
    ({"cores": 1.5}, "cores", "whole number >= 1"),
    ({"cores": True}, "cores", "whole number >= 1"),
    ({"memory": "lots"}, "memory", "'16GB'"),
    ({"memory": -5}, "memory", "'16GB'"),
    ({"walltime": "2h"}, "walltime", "'02:00:00'"),
    ({"walltime": 3600}, "walltime", "'02:00:00'"),
    ({"GPU": 0}, "GPU", "positive number"),
    ({"GPU": "one"}, "GPU", "positive number"),
])
def test_a_bad_request_names_the_op_and_the_field(request_, field, hint):
    with pytest.raises(jf.FlowError) as info:
        jf.op(resources=request_)(lambda: 1)
    message = str(info.value)
    assert "op '<lambda>'" in message and f"resources: {field}" in message and hint in message


def test_resources_must_be_a_mapping():
    with pytest.raises(jf.FlowError, match="op 'f'.*must be a dict"):
        jf.op(name="f", resources=["GPU"])(lambda: 1)


def test_memory_and_walltime_units():
    assert memory_bytes("16GB") == 16 * 10**9
    assert memory_bytes("512 MiB") == 512 * 2**20
    assert [walltime_seconds(t) for t in ("90", "30:00", "02:00:00", "1-00", "1-02:30", "1-02:30:15")] == [
        5400, 1800, 7200, 86400, 86400 + 9000, 86400 + 9015]
    with pytest.raises(ValueError):
        walltime_seconds("00:00:00")


def test_normalise_names_a_cell_with_the_given_error_class():
    class CellProblem(jf.FlowError):
        pass

    with pytest.raises(CellProblem, match="cell 'fit': resources: memory"):
        normalise({"memory": "a lot"}, "cell 'fit'", error=CellProblem)
