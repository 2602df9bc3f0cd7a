#!/usr/bin/env bash
# jlpm pointed at the npm registry this machine is configured for (`npm config get registry`),
# so builds work behind a mirror. The Python build (hatch-jupyter-builder) calls this.
set -euo pipefail
if [ -z "${YARN_NPM_REGISTRY_SERVER:-}" ]; then
  YARN_NPM_REGISTRY_SERVER="$(npm config get registry 2>/dev/null || echo https://registry.npmjs.org/)"
  export YARN_NPM_REGISTRY_SERVER="${YARN_NPM_REGISTRY_SERVER%/}"
fi
exec jlpm "$@"
