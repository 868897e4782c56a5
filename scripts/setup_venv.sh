#!/usr/bin/env bash
# Creates or refreshes .venv in the repository root. Sourced by demo_run.bash and run_tests.sh.
# Usage: source scripts/setup_venv.sh [extras]   (extras default: dev)
set -euo pipefail
_repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_venv="$_repo_root/.venv"
_extras="${1:-dev}"
_stamp="$_venv/.stereo4d-setup-stamp"
_want="$(cat "$_repo_root/pyproject.toml" "$_repo_root/scripts/setup_venv.sh" | sha256sum | cut -c1-16)-$_extras"
_python="${PYTHON:-python3.11}"
command -v "$_python" >/dev/null 2>&1 || _python=python3
if [ ! -x "$_venv/bin/python" ] || [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
  if [ ! -x "$_venv/bin/python" ]; then
    echo "[setup] creating .venv with $($_python --version) (first run takes a few minutes)"
    "$_python" -m venv "$_venv"
  else
    echo "[setup] .venv is out of date with pyproject.toml; updating"
  fi
  "$_venv/bin/python" -m pip install --quiet --upgrade pip
  # The CPU wheel first: a bare 'torch' requirement would pull a multi-GB CUDA build.
  "$_venv/bin/python" -m pip install --quiet "torch==2.13.0"
  "$_venv/bin/python" -m pip install --quiet -e "$_repo_root[$_extras]"
  echo "$_want" > "$_stamp"
  echo "[setup] .venv ready"
fi
export PATH="$_venv/bin:$PATH"
export VIRTUAL_ENV="$_venv"
