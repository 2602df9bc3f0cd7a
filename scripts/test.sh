#!/usr/bin/env bash
# The whole test suite, set-up included: `bash scripts/test.sh` on a fresh machine.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/engine -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PYTHON=${PYTHON:-python3}
exec "$PYTHON" -m pytest -p no:cacheprovider -q -rs "${@:-tests}"
