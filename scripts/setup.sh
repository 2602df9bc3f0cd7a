#!/usr/bin/env bash
# Installs everything jupyter_flow and its test suite need on a fresh Debian machine:
# system packages (PostgreSQL for the store tests) and this package with its test extras.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(postgresql slurm-wlm munge chromium environment-modules)
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
# A symlink left by `jupyter labextension develop` would make pip write the packaged
# install.json into the source tree, and the next build would then ship it twice.
ext_dir="$("$PYTHON" -c 'import sys; print(sys.prefix)')/share/jupyter/labextensions/jupyter-flow"
if [ -L "$ext_dir" ]; then rm "$ext_dir"; fi
rm -f jupyter_flow/labextension/install.json
# The install builds the JupyterLab extension (js/ -> jupyter_flow/labextension, jlpm on
# `npm config get registry`) and copies it where JupyterLab finds it.
"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[test]"
