#!/usr/bin/env bash
# The quickstart on the embedded defaults (SQLite store, local Dask cluster):
# `bash scripts/demo.sh` on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[examples]"
exec "$PYTHON" scripts/demo.py
