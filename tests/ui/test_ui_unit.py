"""The TypeScript unit tests (layout, runs list and feed, launch form, schedules, notices, API
client), run by vitest in js/."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parents[2] / "js"


@pytest.mark.timeout(300)
def test_typescript_unit_tests_pass():
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed; the TypeScript tests need it")
    if not (JS / "node_modules" / "vitest").exists():
        # The Python build installs js/ dependencies only when it rebuilds the extension.
        subprocess.run(["bash", "scripts/jlpm.sh", "install"], cwd=JS, check=True,
                       capture_output=True, text=True, timeout=240)
    result = subprocess.run(["bash", "scripts/jlpm.sh", "test"], cwd=JS, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.split("Tests")[-1]
