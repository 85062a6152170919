#!/usr/bin/env bash
# Ray on one GPU: 4 client actors holding 0.2 GPU each and the server actor holding 0.2, all
# computing on CUDA (runtime.device=cuda refuses a silent CPU fallback), then the same run on
# the in-process backend on the same GPU, and a comparison of the two. Digits (bundled with
# scikit-learn), so no data files are needed.
#
#   jobs/gpu_ray_check.sh OUT_DIR [PYTHON]
#
# OUT_DIR receives ray.* and inprocess.* (stdout, run.log, metrics.parquet) and
# gpu_processes.csv (nvidia-smi's compute processes, sampled every 2 s during the Ray run).
set -u
OUT=${1:?output folder}
PY=${2:-python3}
RUNS=${RUNS_DIR:-/tmp/fslsage-gpu-ray}
DEVICE=${DEVICE:-cuda}  # cpu: check this script's plumbing on a machine without a GPU
ROUNDS=${ROUNDS:-10}
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0
mkdir -p "$OUT" "$RUNS"
common=("runtime.device=$DEVICE" "run.rounds=$ROUNDS" run.checkpoint_every=0)

(
    for i in $(seq 150); do
        nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader 2>/dev/null \
            | sed "s/^/$((2 * i)) s, /"
        sleep 2
    done
) >"$OUT/gpu_processes.csv" &
sampler=$!
"$PY" -m fslsage_ray run --quiet --overwrite --out "$RUNS/ray" "${common[@]}" runtime.backend=ray \
    runtime.local_num_gpus=1 runtime.local_num_cpus=8 runtime.num_actors=4 \
    runtime.actor_num_cpus=1 runtime.actor_num_gpus=0.2 runtime.server_num_gpus=0.2 \
    >"$OUT/ray.stdout" 2>&1
ray_status=$?
kill "$sampler" 2>/dev/null
"$PY" -m fslsage_ray run --quiet --overwrite --out "$RUNS/inprocess" "${common[@]}" \
    runtime.backend=inprocess \
    >"$OUT/inprocess.stdout" 2>&1
inprocess_status=$?
for name in ray inprocess; do
    for f in run.log metrics.parquet; do
        [ -f "$RUNS/$name/$f" ] && cp "$RUNS/$name/$f" "$OUT/$name.$f"
    done
    echo "== $name"
    grep -h "backend:" "$RUNS/$name/run.log" 2>/dev/null
    tail -n 3 "$OUT/$name.stdout"
done
[ "$ray_status" -eq 0 ] && [ "$inprocess_status" -eq 0 ] || exit 1
"$PY" - "$RUNS/ray/metrics.parquet" "$RUNS/inprocess/metrics.parquet" <<'PYEOF'
"""Same ledger exactly; learning metrics identical or within float noise of the GPU."""
import sys

import pyarrow.parquet as pq

ray_rows, local_rows = (pq.read_table(p).to_pylist() for p in sys.argv[1:3])
assert len(ray_rows) == len(local_rows), (len(ray_rows), len(local_rows))
for a, b in zip(ray_rows, local_rows):
    print(f"round {a['round']:2d}  acc ray {a['test_acc']:.4f}  in-process {b['test_acc']:.4f}"
          f"  loss ray {a['test_loss']:.6f}  in-process {b['test_loss']:.6f}")
assert [r["comm_bytes"] for r in ray_rows] == [r["comm_bytes"] for r in local_rows], "ledgers differ"
same = all(a[k] == b[k] for a, b in zip(ray_rows, local_rows) for k in ("test_acc", "test_loss"))
gap = max(abs(a["test_loss"] - b["test_loss"]) for a, b in zip(ray_rows, local_rows))
print(f"ledger identical; learning metrics {'bit-identical' if same else 'differ'}; "
      f"largest test-loss gap {gap:.2e}; final accuracy ray {ray_rows[-1]['test_acc']:.4f}")
assert ray_rows[-1]["test_acc"] > 0.9, "the Ray run on the GPU did not learn"
PYEOF
