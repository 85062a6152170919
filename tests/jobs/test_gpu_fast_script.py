"""jobs/gpu_fast_check.sh (issue 12's GPU check) runs end to end on the CPU, shrunk.

It is meant for a borrowed GPU machine with minutes of budget and no second chance, so its
plumbing (the two layouts, output names, the summary, the exit status) is checked here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from job_scripts import SHRINK_FAST, run_script

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(tmp_path: Path, data: Path, extra: str):
    out = str(tmp_path / "out")
    return run_script(
        "gpu_fast_check.sh",
        [str(data), out],
        tmp_path,
        400,
        DEVICE="cpu",
        ROUNDS="2",
        CPUS="4",
        EXTRA=extra,
    )


@pytest.mark.slow  # two real runs (~40 s); the paper script's test keeps such plumbing quick
def test_both_layouts_run_and_the_summary_compares_them(tmp_path: Path, shared_data: Path):
    proc = _run(tmp_path, shared_data, SHRINK_FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "out"
    for name in ("ray", "inprocess"):
        rows = pq.read_table(out / f"{name}.metrics.parquet").to_pylist()
        assert [r["round"] for r in rows] == [0, 1]
        assert rows[0]["aligned"] and not rows[1]["aligned"]  # round 0 aligns
        assert f"== {name}" in proc.stdout
    assert "ray: 2 client actor(s)" in (out / "ray.run.log").read_text()
    summary = (out / "summary.txt").read_text()
    assert "ledgers identical" in summary
    assert summary.count("samples/s in local steps") == 2


def test_a_failing_run_fails_the_script(tmp_path: Path, shared_data: Path) -> None:
    proc = _run(tmp_path, shared_data, SHRINK_FAST + " algorithm.batch_size=0")
    assert proc.returncode != 0
    assert "algorithm.batch_size" in (tmp_path / "out" / "ray.stdout").read_text()
    assert not (tmp_path / "out" / "summary.txt").exists()
