#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite (linters included). Extra arguments go
# to pytest, e.g. scripts/test.sh -k writer -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
