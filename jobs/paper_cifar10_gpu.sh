#!/usr/bin/env bash
# The authors' full CIFAR-10 IID setting (configs/cifar10/fsl_sage.yaml: 10 clients x 5,000
# images, batch 256, q=5, l=10, 100 alignment epochs) for FSL-SAGE and CSE-FSL on one GPU,
# each until it first reaches 81% test accuracy or MINUTES pass. The two runs share the GPU
# as two processes (each is launch-bound, so sharing costs little), on the in-process backend.
#
#   jobs/paper_cifar10_gpu.sh DATA_DIR OUT_DIR [MINUTES] [PYTHON]
#
# OUT_DIR receives, refreshed every POLL_S seconds (default 15; so a run cut short still
# leaves its rounds):
# ALG.metrics.parquet, ALG.run.log and ALG.stdout for each ALG.
set -u
DATA=${1:?data folder with cifar10-train.parquet and cifar10-test.parquet}
OUT=${2:?output folder}
MINUTES=${3:-8}
PY=${4:-python3}
RUNS=${RUNS_DIR:-/tmp/fslsage-gpu-runs}
ALGS=${ALGS:-"fsl_sage cse_fsl"}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUNS"
POLL_S=${POLL_S:-15}  # seconds between refreshes of OUT_DIR (its test waits 1, not 15)
EXTRA=${EXTRA:-}  # more overrides, e.g. for a short check: EXTRA="run.rounds=2"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda:', torch.cuda.is_available())"

pids=()
for alg in $ALGS; do
    "$PY" -m fslsage_ray run --config configs/cifar10/fsl_sage.yaml --quiet --overwrite \
        --out "$RUNS/$alg" algorithm.name="$alg" data.data_dir="$DATA" \
        runtime.backend=inprocess runtime.device=cuda run.name="cifar10-$alg-gpu" \
        run.stop_at_accuracy=0.81 run.max_minutes="$MINUTES" run.checkpoint_every=0 $EXTRA \
        >"$OUT/$alg.stdout" 2>&1 &
    pids+=($!)
done

collect() {
    for alg in $ALGS; do
        for f in metrics.parquet run.log; do
            [ -f "$RUNS/$alg/$f" ] && cp "$RUNS/$alg/$f" "$OUT/$alg.$f.tmp" \
                && mv "$OUT/$alg.$f.tmp" "$OUT/$alg.$f"
        done
    done
}
alive() {
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done
    return 1
}
ticks=0
while alive; do
    collect
    if [ $((ticks % 4)) -eq 1 ]; then
        nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
        for alg in $ALGS; do tail -n 1 "$RUNS/$alg/run.log" 2>/dev/null; done
    fi
    ticks=$((ticks + 1))
    sleep "$POLL_S"
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
collect
for alg in $ALGS; do echo "== $alg"; tail -n 4 "$OUT/$alg.stdout"; done
exit $status
