"""A half-finished `compare` resumes: the same arguments keep the finished runs and run only
the others, with the combined table what one uninterrupted comparison gives; a folder that
holds another comparison is refused in one line."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from fslsage_ray.cli import main
from fslsage_ray.outputs.metrics import learned

TINY = ["runtime.backend=inprocess", "run.rounds=1", "algorithm.num_clients=2"]
TINY += ["data.train_subset=100", "alignment.epochs=1"]


def _learned(path) -> list[dict]:
    return learned(pq.read_table(path / "comparison.parquet").to_pylist())


def test_half_finished_comparison_resumes_and_another_is_refused(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--quiet", "--methods", "fedavg,fsl_sage", "--out", str(out), *TINY]
    assert main(args) == 0
    whole = _learned(out)
    spec = json.loads((out / "compare.json").read_text())
    assert spec["finished"] == ["fedavg", "fsl_sage"]

    # stopped during the second run: it is not recorded as finished, its folder half-written
    (out / "compare.json").write_text(json.dumps({**spec, "finished": ["fedavg"]}))
    (out / "fsl_sage" / "metrics.parquet").unlink()
    kept = (out / "fedavg" / "metrics.parquet").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "fedavg" / "metrics.parquet").stat().st_mtime_ns == kept  # not run again
    assert (out / "fsl_sage" / "metrics.parquet").is_file()
    assert _learned(out) == whole

    capsys.readouterr()
    assert main([*args, "run.rounds=2"]) == 2
    assert "holds a comparison with other settings" in capsys.readouterr().err
