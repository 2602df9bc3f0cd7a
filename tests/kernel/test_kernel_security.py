"""In a real kernel: a planted pickle behind a cached cell is never loaded into the namespace,
and a cell capturing a secret-named global leaves no plaintext in the store."""

from __future__ import annotations

from jupyter_flow.store import Store
from tests.planted import files_holding, plant

from .conftest import error_of, text_of


def test_planted_cell_output_is_not_hydrated(kernel, tmp_path):
    marker = tmp_path / "pwned"
    cell = "%%flow make\nvalues = {1, 2, 3}"
    kernel.ok(cell)
    assert kernel.value("sorted(values)") == [1, 2, 3]
    kernel.ok("from jupyter_flow.engine.runtime import get_engine\nget_engine().writer.flush()")

    with Store(f"sqlite:///{kernel.home / 'flow.db'}") as store:
        (entry,) = [e for e in store.list_cache() if e["op_name"] == "make"]
        outputs = dict(entry["outputs"], values=plant(kernel.home / "artifacts", marker))
        store.put_cache([{"key": entry["key"], "outputs": outputs, "op_name": "make", "replace": True}])

    failed = kernel.run(cell)  # a cache hit whose stored value is the planted pickle
    error = error_of(failed)
    assert error is not None and error["ename"] == "ArtifactUntrusted", text_of(failed)
    assert "has no signature" in error["evalue"]
    assert not marker.exists()
    assert kernel.value("sorted(values)") == [1, 2, 3]  # the namespace kept its value


def test_cell_capturing_a_secret_global_stores_no_plaintext(kernel):
    kernel.ok("API_TOKEN = 's3cr3t'\nn_calls = 2")
    kernel.ok("%%flow calls\ncalls = [len(API_TOKEN)] * n_calls")
    assert kernel.value("calls") == [6, 6]
    run_id = kernel.value("last_run().id")
    kernel.ok("from jupyter_flow.engine.runtime import get_engine\nget_engine().writer.flush()")
    assert files_holding(kernel.home) == []
    kernel.ok(f"resumed = jf.resume({run_id!r})")  # the sealed snapshot still opens
    assert kernel.value("[resumed.status, resumed.result()[0]['calls']]") == ["SUCCESS", [6, 6]]
