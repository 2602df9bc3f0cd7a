#!/usr/bin/env bash
# Installs everything jupyter_flow and its test suite need on a fresh Debian machine:
# system packages (PostgreSQL for the store tests) and this package with its test extras.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(postgresql slurm-wlm munge chromium)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[test]"
# The editable install built the JupyterLab extension (js/ -> jupyter_flow/labextension,
# with jlpm on `npm config get registry`); link it so JupyterLab serves later rebuilds too.
"$PYTHON" -m jupyter labextension develop --overwrite . >/dev/null
