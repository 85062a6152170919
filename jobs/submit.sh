#!/usr/bin/env bash
# Submit an fslsage_ray command to a running Ray cluster as a Ray job.
#
#   jobs/submit.sh [--address http://127.0.0.1:8265] [ray job submit options] -- \
#       run --config configs/digits/fsl_sage.yaml run.rounds=50 --out /data/runs/digits-50
#
# Everything after `--` is passed to `python -m fslsage_ray` on the cluster. Options before
# `--` go to `ray job submit` (e.g. --no-wait, --submission-id ID). The address is the
# cluster's dashboard (job API) URL: --address, else $RAY_API_SERVER_ADDRESS, else
# $RAY_ADDRESS, else the local default. $RAY names the ray executable (default: ray on PATH).
#
# The repository root is uploaded as the job's working_dir (jobs/runtime_env.yaml lists what
# is left out: .venv, runs/, .git, ...), so the code that runs is the code you have here.
# Results are written by the job, on the cluster's filesystem: pass an --out path that exists
# there (an absolute path on shared storage for multi-node clusters).
set -euo pipefail

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

address="${RAY_API_SERVER_ADDRESS:-${RAY_ADDRESS:-http://127.0.0.1:8265}}"
ray_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --address) [[ $# -ge 2 ]] || usage; address="$2"; shift 2 ;;
        --address=*) address="${1#--address=}"; shift ;;
        -h|--help) usage ;;
        --) shift; break ;;
        *) ray_args+=("$1"); shift ;;
    esac
done
[[ $# -gt 0 ]] || { echo "error: nothing to run; put the fslsage_ray command after --" >&2; usage; }

# Submit from the repository root: working_dir and the runtime env path are relative to it.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${RAY:-ray}" job submit \
    --address "$address" \
    --working-dir . \
    --runtime-env jobs/runtime_env.yaml \
    "${ray_args[@]}" \
    -- python -m fslsage_ray "$@"
