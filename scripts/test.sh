#!/usr/bin/env bash
# The whole test suite, set-up included: `bash scripts/test.sh` on a fresh machine.
# ruff and mypy run before pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/engine -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PYTHON=${PYTHON:-python3}
# Lint and types first (configured in pyproject.toml): a few seconds, and a mistake they
# catch fails here instead of after the 18-minute suite.
"$PYTHON" -m ruff check .
"$PYTHON" -m mypy
exec "$PYTHON" -m pytest -p no:cacheprovider -q -rs "${@:-tests}"
