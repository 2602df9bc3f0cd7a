"""The public names of ``import jupyter_flow as jf`` whatever was imported before."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_jf_batch_stays_the_function_after_its_subpackage_is_imported():
    # A fresh interpreter: the bug needs jupyter_flow.batch imported before jf.batch is read.
    code = textwrap.dedent("""
        from jupyter_flow.batch.declared import declared_params
        import jupyter_flow as jf
        from jupyter_flow.batch import schedules
        assert callable(jf.batch) and jf.batch.__module__ == "jupyter_flow.batch.runner", jf.batch
        assert callable(jf.schedules) and jf.schedules is schedules.schedules
        assert jf.compare.__module__ == "jupyter_flow.batch.runner"
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
