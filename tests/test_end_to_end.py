"""The offline quick start must learn: digits, 10 clients, FSL-SAGE, accuracy >= 90%."""

from __future__ import annotations

import pyarrow.parquet as pq

from fslsage_ray.cli import main


def test_quickstart_learns_in_process(tmp_path, capsys):
    out = tmp_path / "run"
    # 4 rounds: only round 0 aligns (every 5); the quick start passes 90% by round 2
    code = main(["run", "--backend", "inprocess", "--quiet", "--out", str(out), "run.rounds=4"])
    assert code == 0
    table = pq.read_table(out / "metrics.parquet").to_pylist()
    assert len(table) == 4
    assert table[-1]["test_acc"] >= 0.90
    assert table[0]["am_rel_error_after"] < table[0]["am_rel_error_before"]
    assert (out / "config.yaml").is_file() and (out / "run.log").is_file()
    assert "final test accuracy" in capsys.readouterr().out
