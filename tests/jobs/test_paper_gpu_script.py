"""jobs/paper_cifar10_gpu.sh runs end to end (on the CPU, shrunk) and leaves its outputs.

The script is run on a borrowed GPU machine with minutes of budget and no second chance, so
its plumbing (overrides, output names, the refresh loop, the exit status) is checked here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from job_scripts import run_script

# ResNet-18 on the CPU: 2 clients (10 fit 5x the alignment rows), the fewest images that
# still give each client a batch
SHRINK = (
    "runtime.device=cpu data.train_subset=64 data.test_subset=32 algorithm.batch_size=32 "
    "algorithm.num_clients=2 alignment.epochs=2 alignment.buffer_size=32 run.rounds=2"
)

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(tmp_path: Path, data: Path, extra: str):
    args = [str(data), str(tmp_path / "out"), "5"]
    return run_script(
        "paper_cifar10_gpu.sh", args, tmp_path, EXTRA=extra, ALGS="fsl_sage cse_fsl", POLL_S="1"
    )


def test_both_runs_finish_and_their_outputs_come_back(tmp_path: Path, shared_data: Path) -> None:
    proc = _run(tmp_path, shared_data, SHRINK)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "out"
    for alg in ("fsl_sage", "cse_fsl"):
        rows = pq.read_table(out / f"{alg}.metrics.parquet").to_pylist()
        assert [r["round"] for r in rows] == [0, 1]
        assert {r["algorithm"] for r in rows} == {alg}
        assert "round 1 acc" in (out / f"{alg}.run.log").read_text()
        assert f"== {alg}" in proc.stdout


def test_a_failing_run_fails_the_script(tmp_path: Path, shared_data: Path) -> None:
    proc = _run(tmp_path, shared_data, SHRINK + " algorithm.batch_size=0")
    assert proc.returncode != 0
    assert "algorithm.batch_size" in (tmp_path / "out" / "fsl_sage.stdout").read_text()


def test_gpu_ray_check_script_plumbing_on_cpu(tmp_path: Path) -> None:
    """jobs/gpu_ray_check.sh with DEVICE=cpu: Ray's logical GPUs, the same comparison."""
    # 3 rounds reach 92.8%; the script wants > 90%
    proc = run_script(
        "gpu_ray_check.sh", [str(tmp_path / "out")], tmp_path, DEVICE="cpu", ROUNDS="3"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "GPU: 0.2" in proc.stdout and "computing on: server cpu" in proc.stdout
    assert "ledger identical; learning metrics bit-identical" in proc.stdout
