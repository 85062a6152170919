"""benchmarks/aux_groups.py at tiny sizes: both paths run and agree."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_group_and_one_at_a_time_are_timed_and_agree(tmp_path, capsys):
    sys.path.insert(0, str(BENCH))
    from aux_groups import main

    out = tmp_path / "ag.json"
    argv = ["--models", "cnn", "--ams", "3", "--samples", "32", "--epochs", "1"]
    assert main([*argv, "--batch", "16", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["one_at_a_time_s"] > 0 and row["group_s"] > 0
    assert row["max_rel_param_diff"] < 1e-4
    assert "ratio" in capsys.readouterr().out
