#!/usr/bin/env bash
# Issue 12's GPU check: the authors' CIFAR-10 setting (configs/cifar10/fsl_sage.yaml: 10
# clients x 5,000 images, batch 256, q=5, 100 alignment epochs; round 0 aligns) for ROUNDS
# rounds on one GPU, first on Ray with 10 client actors at 0.09 GPU and the server at 0.1
# (0.09, not 0.1: ten at 0.1 leave no share for the server on one GPU), then on the
# in-process backend on the same GPU. Prints, per backend: samples per second in local
# steps, seconds per ordinary and per alignment round, mean GPU utilisation; and checks that
# both booked the same bytes.
#
#   jobs/gpu_fast_check.sh DATA_DIR OUT_DIR [PYTHON]
#
# OUT_DIR receives ray.* and inprocess.* (stdout, run.log, metrics.parquet, gpu.csv: the
# GPU's utilisation and memory each second of that run, from nvidia-smi) and summary.txt.
# DEVICE=cpu checks the plumbing on a machine without a GPU; EXTRA adds overrides to both
# runs (applied last, e.g. a smaller subset; EXTRA='model.precision=bf16
# model.channels_last=true' measures the compute options against a plain run). RAY_KIT
# names a Ray archive made by jobs/device_kit.py, unpacked to RAY_SITE and put on PYTHONPATH
# first (the device machine has no Ray and no registry; the kit says which calls carry what).
set -u
DATA=${1:?data folder with cifar10-train.parquet and cifar10-test.parquet}
OUT=${2:?output folder}
PY=${3:-python3}
RUNS=${RUNS_DIR:-/tmp/fslsage-gpu-fast}
DEVICE=${DEVICE:-cuda}
ROUNDS=${ROUNDS:-3}
CPUS=${CPUS:-$(nproc)}
EXTRA=${EXTRA:-}
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0
mkdir -p "$OUT" "$RUNS"
for f in cifar10-train.parquet cifar10-test.parquet; do
    [ -f "$DATA/$f" ] || { echo "no $DATA/$f: carry the data first (jobs/device_kit.py)"; exit 2; }
done
if [ -n "${RAY_KIT:-}" ]; then  # Ray packed by jobs/device_kit.py for a machine without it
    site=${RAY_SITE:-/tmp/fslsage-ray-site}
    if [ ! -f "$site/ray/__init__.py" ]; then
        # Python's tarfile, not tar -J: a bare image may lack the xz program
        "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="tar")' \
            "$RAY_KIT" "$site" || exit 2
    fi
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c "import ray; print('ray', ray.__version__, 'from', ray.__file__)" || exit 2
common=(--config configs/cifar10/fsl_sage.yaml --quiet --overwrite "data.data_dir=$DATA"
    "runtime.device=$DEVICE" "run.rounds=$ROUNDS" run.checkpoint_every=0)
layouts=(
    "ray:runtime.backend=ray runtime.local_num_gpus=1 runtime.local_num_cpus=$CPUS
     runtime.num_actors=10 runtime.actor_num_cpus=1 runtime.actor_num_gpus=0.09
     runtime.server_num_gpus=0.1"
    "inprocess:runtime.backend=inprocess"
)
status=0
for layout in "${layouts[@]}"; do
    name=${layout%%:*}
    # shellcheck disable=SC2206  # the overrides are words on purpose
    overrides=(${layout#*:} $EXTRA)
    sampler=
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader \
            -l 1 >"$OUT/$name.gpu.csv" 2>/dev/null &
        sampler=$!
    fi
    "$PY" -m fslsage_ray run --out "$RUNS/$name" "${common[@]}" "${overrides[@]}" \
        >"$OUT/$name.stdout" 2>&1 || status=1
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
    for f in run.log metrics.parquet; do
        [ -f "$RUNS/$name/$f" ] && cp "$RUNS/$name/$f" "$OUT/$name.$f"
    done
    echo "== $name"
    grep -h "backend:" "$RUNS/$name/run.log" 2>/dev/null
    tail -n 3 "$OUT/$name.stdout"
done
[ "$status" -eq 0 ] || exit 1
"$PY" - "$OUT" <<'PYEOF' | tee "$OUT/summary.txt"
"""Per backend: throughput, round times, GPU use; the two ledgers must be the same."""
import csv
import statistics
import sys
from pathlib import Path

import pyarrow.parquet as pq

out = Path(sys.argv[1])
rows = {name: pq.read_table(out / f"{name}.metrics.parquet").to_pylist() for name in ("ray", "inprocess")}
for name, table in rows.items():
    aligned = [r["wall_s"] for r in table if r["aligned"]]
    ordinary = [r["wall_s"] for r in table[1:] if not r["aligned"]]
    util = []
    gpu = out / f"{name}.gpu.csv"
    if gpu.exists():
        for line in csv.reader(gpu.open()):
            if len(line) >= 2 and line[1].strip().rstrip(" %").isdigit():
                util.append(float(line[1].strip().rstrip(" %")))
    print(
        f"{name:9s} samples/s in local steps {statistics.median(r['samples_per_s'] for r in table):8.0f}"
        f" | alignment round {statistics.median(aligned) if aligned else float('nan'):6.1f} s"
        f" (align {statistics.median(r['align_s'] for r in table if r['aligned']) if aligned else float('nan'):.1f} s)"
        f" | ordinary round {statistics.median(ordinary) if ordinary else float('nan'):6.1f} s"
        f" | GPU busy {statistics.mean(util) if util else float('nan'):5.1f}% ({len(util)} samples)"
        f" | final acc {table[-1]['test_acc']:.4f}"
    )
ray, local = rows["ray"], rows["inprocess"]
assert [r["comm_bytes"] for r in ray] == [r["comm_bytes"] for r in local], "ledgers differ"
print("ledgers identical;", "Ray/in-process wall per round:",
      " ".join(f"{a['wall_s'] / b['wall_s']:.2f}" for a, b in zip(ray, local)))
PYEOF
