#!/usr/bin/env bash
# Creates or refreshes .venv in the repository root. Sourced by demo_run.bash and run_tests.sh.
# Usage: source scripts/setup_venv.sh [extras]   (comma-separated, e.g. "dev,tf"; "" = core only)
# The stamp file records a hash of pyproject.toml and this script plus the extras installed;
# nothing is installed when the hash matches and the wanted extras are already there.
set -euo pipefail
_repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_venv="$_repo_root/.venv"
_wanted="${1-dev}"
_stamp="$_venv/.stereo4d-setup-stamp"
_hash="$(cat "$_repo_root/pyproject.toml" "$_repo_root/scripts/setup_venv.sh" | sha256sum | cut -c1-16)"
_python="${PYTHON:-python3.11}"
command -v "$_python" >/dev/null 2>&1 || _python=python3

_have_hash=""
_have_extras=""
if [ -f "$_stamp" ]; then
  _have_hash="$(sed -n 1p "$_stamp")"
  _have_extras="$(sed -n 2p "$_stamp")"
fi
# Extras to install: the wanted ones, plus those already installed if the hash still matches.
_all_extras="$_wanted"
[ "$_have_hash" = "$_hash" ] && _all_extras="$_have_extras,$_wanted"
_all_extras="$(echo "$_all_extras" | tr ',' '\n' | sed '/^$/d' | sort -u | paste -sd, -)"
_missing=""
for _e in $(echo "$_wanted" | tr ',' ' '); do
  case ",$_have_extras," in *",$_e,"*) ;; *) _missing="$_missing $_e" ;; esac
done

if [ ! -x "$_venv/bin/python" ] || [ "$_have_hash" != "$_hash" ] || [ -n "$_missing" ]; then
  if [ ! -x "$_venv/bin/python" ]; then
    echo "[setup] creating .venv with $($_python --version) (first run takes a few minutes)"
    "$_python" -m venv "$_venv"
  elif [ "$_have_hash" != "$_hash" ]; then
    echo "[setup] .venv is out of date with pyproject.toml; updating"
  else
    echo "[setup] adding extras:$_missing"
  fi
  "$_venv/bin/python" -m pip install --quiet --upgrade pip
  # The CPU wheel first: a bare 'torch' requirement would pull a multi-GB CUDA build.
  "$_venv/bin/python" -m pip install --quiet "torch==2.13.0"
  if [ -n "$_all_extras" ]; then
    "$_venv/bin/python" -m pip install --quiet -e "$_repo_root[$_all_extras]"
  else
    "$_venv/bin/python" -m pip install --quiet -e "$_repo_root"
  fi
  printf '%s\n%s\n' "$_hash" "$_all_extras" > "$_stamp"
  echo "[setup] .venv ready (extras: ${_all_extras:-none})"
fi
export PATH="$_venv/bin:$PATH"
export VIRTUAL_ENV="$_venv"
