"""The benchmark scripts still run against the current API (tiny sizes; numbers unused)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env |= {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )


@pytest.mark.parametrize(
    "script",
    ["soak.py", "scaling.py", "step_overhead.py", "flower_fedavg.py", "precision.py", "am_step.py"],
)
def test_help(script, tmp_path):
    proc = _run([str(BENCH / script), "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.ray
def test_soak_runs_a_few_rounds(tmp_path):
    out = tmp_path / "soak.json"
    proc = _run(
        [
            str(BENCH / "soak.py"),
            "--rounds",
            "4",
            "--clients",
            "5",
            "--every",
            "2",
            "--out",
            str(out),
        ],
        tmp_path,
    )
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: bound exceeded (too short)
    result = json.loads(out.read_text())
    assert [s["round"] for s in result["samples"]] == [2, 4]


@pytest.mark.slow
@pytest.mark.ray
def test_step_overhead_runs_two_rounds(tmp_path):
    proc = _run(
        [str(BENCH / "step_overhead.py"), "--rounds", "2", "--out", str(tmp_path)], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ratio ray/inproc" in proc.stdout
