"""A store that turns read-only under a live kernel: every call raises a FlowError naming the
file and the fix, the kernel lives on, and once the store is writable again work goes on.

The store's files are made immutable (``chattr +i``, as root), the way a read-only store
looks to SQLite; that needs root and a filesystem with the immutable flag."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from .conftest import error_of, text_of

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("chattr") is None,
    reason="making the store's files immutable needs root and chattr",
)


def _immutable(paths, on: bool) -> None:
    for path in paths:
        subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True)


def test_a_store_turned_read_only_raises_a_flow_error_and_the_kernel_survives(kernel):
    kernel.ok("%%flow first\nx = 20")
    kernel.ok("from jupyter_flow.engine.runtime import get_engine\nget_engine().writer.flush()")
    db = kernel.home / "flow.db"
    files = [p for p in (db, db.with_name("flow.db-wal"), db.with_name("flow.db-shm")) if p.exists()]
    _immutable(files, True)
    try:
        for source in ("%%flow second\ny = x + 1", "jf.runs()"):
            cell = kernel.run(source)
            error = error_of(cell)
            assert error is not None and error["ename"] == "StoreReadOnly", text_of(cell)
            assert str(db) in error["evalue"] and "chattr -i" in error["evalue"], error["evalue"]
        assert kernel.value("x + 1") == 21  # the kernel is alive, its namespace intact
        # A new process (the CLI) says the same, without a traceback.
        cli = subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "runs"], capture_output=True, text=True,
                             env={**os.environ, "JUPYTER_FLOW_HOME": str(kernel.home)}, timeout=120)
        assert cli.returncode != 0 and "is read-only" in cli.stderr and str(db) in cli.stderr, cli.stderr
        assert "Traceback" not in cli.stderr, cli.stderr
    finally:
        _immutable(files, False)
    kernel.ok("%%flow second\ny = x + 1")
    assert kernel.value("y") == 21
