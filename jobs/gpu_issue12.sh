#!/usr/bin/env bash
# Issue 12, item 6, as one device call after the data is staged (jobs/device_kit.py prints
# both calls): on one GPU, the authors' CIFAR-10 setting for 3 rounds on Ray (10 client actors
# at 0.09 GPU) against in-process, first in fp32, then with bf16 autocast and channels-last;
# then the AM alignment of 10 AMs one at a time against one vectorised group on the GPU.
#
#   RAY_KIT=.devkit/ray/site.tar.xz jobs/gpu_issue12.sh DATA_DIR OUT_DIR [PYTHON]
#
# OUT_DIR receives issue12.tgz (every step's outputs: gpu_fast_check.sh's files per setting,
# aux_groups.json), packed again after each step so that a run cut off by the call's time
# limit still returns what finished; the summaries also go to stdout.
set -u -o pipefail
DATA=${1:?data folder with the CIFAR-10 Parquet files}
OUT=${2:?output folder}
PY=${3:-python3}
WORK=${WORK_DIR:-/tmp/fslsage-issue12}
RUNS=${RUNS_ROOT:-/tmp/fslsage-gpu-runs}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT" "$WORK"
pack() { tar -czf "$OUT/issue12.tgz" -C "$WORK" .; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$WORK/gpu.txt" 2>&1
"$PY" -c "import torch; print('torch', torch.__version__)" >>"$WORK/gpu.txt" 2>&1
cat "$WORK/gpu.txt"
status=0
echo "== fp32"
RUNS_DIR="$RUNS/fp32" "$HERE/gpu_fast_check.sh" "$DATA" "$WORK/fp32" "$PY" || status=1
pack
echo "== bf16 + channels-last"
EXTRA="model.precision=bf16 model.channels_last=true ${EXTRA:-}" \
    RUNS_DIR="$RUNS/bf16_cl" "$HERE/gpu_fast_check.sh" "$DATA" "$WORK/bf16_cl" "$PY" \
    || status=1
pack
echo "== AM alignment: one at a time against one vectorised group"
"$PY" "$HERE/../benchmarks/aux_groups.py" --models resnet18 --device "${DEVICE:-cuda}" \
    --samples "${AUX_SAMPLES:-1000}" --epochs "${AUX_EPOCHS:-5}" \
    --out "$WORK/aux_groups.json" 2>&1 | tee "$WORK/aux_groups.txt" || status=1
pack
exit "$status"
