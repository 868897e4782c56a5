#!/usr/bin/env bash
# Runs the test suite. Sets up .venv first when it is missing or out of date.
# Usage: bash run_tests.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_venv.sh dev,tf,batch,viewer,cameras
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
export MPLBACKEND=Agg
echo "[tests] $(python --version), $(nproc) cores"
exec python -m pytest -q -n "${PYTEST_WORKERS:-2}" --durations=15 "$@"
