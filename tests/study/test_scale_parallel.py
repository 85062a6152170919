"""`scale --parallel`: the runs go at the same time as Ray tasks and learn exactly what they
learn one after another; rows and summary say they were measured in parallel."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from fslsage_ray.cli import main
from fslsage_ray.outputs.metrics import learned
from fslsage_ray.study.report import PARALLEL_NOTE

SMALL = ["run.rounds=1", "data.train_subset=100", "alignment.epochs=1"]
TINY = ["--methods", "fsl_sage", "--clients", "2,4", "runtime.backend=inprocess", *SMALL]


def _learned(run_dir) -> list[dict]:
    return learned(pq.read_table(run_dir / "metrics.parquet").to_pylist())


@pytest.mark.ray
def test_parallel_study_learns_what_a_sequential_one_learns(ray_local, tmp_path):
    one, many = tmp_path / "one", tmp_path / "many"
    assert main(["scale", "--quiet", "--out", str(one), *TINY]) == 0
    assert main(["scale", "--quiet", "--parallel", "--out", str(many), *TINY]) == 0
    rows = {p: pq.read_table(p / "scaling.parquet").to_pylist() for p in (one, many)}
    assert [r["run"] for r in rows[many]] == ["fsl_sage-n2-seed200", "fsl_sage-n4-seed200"]
    assert [r["parallel"] for r in rows[one]] == [False, False]
    assert [r["parallel"] for r in rows[many]] == [True, True]
    assert all(r["peak_memory_bytes"] > 2**20 for r in rows[many])
    for a, b in zip(rows[one], rows[many], strict=True):
        assert (a["final"], a["best"]) == (b["final"], b["best"])
        assert _learned(one / a["run"]) == _learned(many / b["run"])
    summary = (many / "summary.md").read_text()
    assert "| in-process | yes |" in summary and PARALLEL_NOTE in summary
    assert PARALLEL_NOTE not in (one / "summary.md").read_text()


def test_parallel_study_needs_the_in_process_backend(tmp_path, capsys):
    args = ["scale", "--parallel", "--out", str(tmp_path), "--clients", "2", *SMALL]
    assert main(args) == 2 and "runtime.backend=inprocess" in capsys.readouterr().err
