"""The README's Python quickstart as a person uses it: pasted into a .py file and run."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _quickstart() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart (Python)", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _run(tmp_path, source: str) -> subprocess.CompletedProcess:
    script = tmp_path / "quickstart.py"
    script.write_text(source)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           "JUPYTER_FLOW_HOME": str(tmp_path / "flow"), "JUPYTER_FLOW_KEYS": str(tmp_path / "keys"),
           "DASK_FLOW__CLUSTERS__LOCAL__KWARGS__N_WORKERS": "1"}
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)


def test_the_readme_quickstart_runs_as_a_script(tmp_path):
    source = _quickstart() + "\n    print('STATUS', run.status, run.result())\n"
    done = _run(tmp_path, source)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "STATUS SUCCESS 4995.0" in done.stdout


def test_a_script_without_the_main_guard_ends_with_one_error_that_says_what_to_do(tmp_path):
    # What a person pastes from an older quickstart, or writes first: the calls at top level.
    head, guarded = _quickstart().split('if __name__ == "__main__":', 1)
    unguarded = head + textwrap.dedent(guarded.split("\n", 1)[1])
    done = _run(tmp_path, unguarded)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("jupyter_flow.core.errors.FlowError: cluster profile 'local'"), done.stderr[-3000:]
    assert 'if __name__ == "__main__":' in last
