"""benchmarks/scaling.py: Ray's cost is the median of paired round differences."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _study(folder: Path, walls: list[float], final: float) -> list[dict]:
    run = "fsl_sage-n100-seed200"
    (folder / run).mkdir(parents=True)
    pq.write_table(pa.table({"wall_s": walls}), folder / run / "metrics.parquet")
    row = {"run": run, "method": "fsl_sage", "clients": 100, "seed": 200, "final": final}
    return [row | {"best": final, "s_per_round": sorted(walls[1:])[1], "peak_memory_bytes": 2**30}]


def test_alternating_rounds_are_compared_round_by_round(tmp_path):
    """Long and short rounds alternate (alignment every 2): the medians of the two lists
    sit on different sides (1.0 against 3.0 s) while every round costs Ray 0.1 s more."""
    sys.path.insert(0, str(BENCH))
    from scaling import overheads

    inproc = _study(tmp_path / "in", [9.0, 1.0, 3.0, 1.0, 3.0, 3.0], 0.5)
    ray = _study(tmp_path / "ray", [9.5, 1.1, 3.1, 1.1, 3.1, 3.1], 0.5)
    (row,) = overheads([(tmp_path / "in", inproc, tmp_path / "ray", ray)], 0.1)
    assert row["participants"] == 10 and row["rounds_paired"] == 5
    assert row["overhead_ms_per_participant"] == pytest.approx(10.0)  # 0.1 s / 10 clients
    assert row["same"]
