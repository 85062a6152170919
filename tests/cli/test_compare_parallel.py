"""`compare --parallel`: independent runs at the same time as Ray tasks learn exactly what
they learn one after another."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from fslsage_ray.cli import main
from fslsage_ray.outputs.metrics import learned

TINY = ["run.rounds=1", "algorithm.num_clients=4", "data.train_subset=200", "alignment.epochs=1"]


def _learned(path) -> list[dict]:
    return learned(pq.read_table(path / "comparison.parquet").to_pylist())


@pytest.mark.ray
def test_parallel_runs_learn_what_sequential_runs_learn(ray_local, tmp_path):
    args = ["compare", "--quiet", "--methods", "fsl_sage,sflv1", "--seeds", "201"]
    args += ["runtime.backend=inprocess", *TINY]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--parallel", "--out", str(tmp_path / "many")]) == 0
    assert _learned(tmp_path / "one") == _learned(tmp_path / "many")
    assert (tmp_path / "many" / "sflv1-seed201" / "metrics.parquet").is_file()


def test_parallel_needs_the_in_process_backend(tmp_path, capsys):
    code = main(["compare", "--parallel", "--out", str(tmp_path), "runtime.backend=ray", *TINY])
    assert code == 2 and "runtime.backend=inprocess" in capsys.readouterr().err
