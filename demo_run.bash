#!/usr/bin/env bash
# End-to-end demo: sets up .venv, renders the synthetic VR180 clip (unless a clip
# is given or already present), runs every stage and prints the evaluation.
#
# Usage: bash demo_run.bash [--vid=<video_id>_<timestamp>] [--force] [--num_frames=N]
#                           [--estimate_cameras]
#   --vid      run an existing clip (stereo4d_dataset/npz/<vid>.npz and
#              stereo4d_dataset/raw/<video_id>.mp4), e.g. the reference demo 9876543210b_66957
#   --force    re-run stages even when their outputs are up to date
#   --estimate_cameras  no released npz: estimate cameras from the video first (estimate_cameras.py,
#              installs the `cameras` extra); the synthetic clip's own npz is set aside and
#              the estimate is scored against it
set -euo pipefail
cd "$(dirname "$0")"

DEFAULT_VID="synthvr180demo_66667"
VID="$DEFAULT_VID"
FORCE=0
NUM_FRAMES=48
ESTIMATE=0
for arg in "$@"; do
  case "$arg" in
    --vid=*) VID="${arg#--vid=}" ;;
    --force) FORCE=1 ;;
    --estimate_cameras) ESTIMATE=1 ;;
    --num_frames=*) NUM_FRAMES="${arg#--num_frames=}" ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

EXTRAS=""
[ "$ESTIMATE" = 1 ] && EXTRAS="cameras"
source scripts/setup_venv.sh "$EXTRAS"
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
export MPLBACKEND=Agg
FLAGS=""
[ "$FORCE" = 1 ] && FLAGS="--force"
[ "$ESTIMATE" = 1 ] && FLAGS="$FLAGS --estimate_cameras"
exec python -m stereo4d.demo --vid="$VID" --default_vid="$DEFAULT_VID" --num_frames="$NUM_FRAMES" $FLAGS
