"""The comparison benchmarks of issue 12 (floor.py, flower_fedavg.py) run and report.

Tiny sizes; the numbers are not looked at, only that every part ran and was reported. The
Flower side needs Flower's own environment, which tests never install: that test is skipped
where the environment is absent.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest
from test_benchmarks_run import BENCH, _run

TINY = ["--quick", "--samples-per-client", "16", "--test-size", "20"]


def test_floor_runs_every_part_and_reports(shared_data, tmp_path):
    out = tmp_path / "floor.json"
    args = [str(BENCH / "floor.py"), *TINY, "--align-epochs", "1", "--no-ours", "--threads", "1"]
    proc = _run([*args, "--data-dir", str(shared_data), "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for label in ("FedAvg s per round", "FSL-SAGE s per ordinary round", "alignment of all AMs"):
        assert label in proc.stdout
    result = json.loads(out.read_text())
    fedavg, sage = result["runs"]["fedavg"]["floor"][0], result["runs"]["fsl_sage"]["floor"][0]
    assert len(fedavg["rounds"]) == len(sage["rounds"]) == 2
    assert sage["rounds"][0]["align_s"] > 0 and sage["rounds"][1]["align_s"] == 0  # round 0 only
    assert all(0 <= r["test_acc"] <= 1 for r in fedavg["rounds"] + sage["rounds"])
    summary = result["summary"]
    assert summary["fedavg"]["floor_per_round_s"] > 0
    assert summary["fsl_sage"]["verdict"] == "NOT MEASURED"  # --no-ours: no ratio to judge


@pytest.mark.parametrize(
    "bad, message",
    [(["--rounds", "1"], "--rounds must be >= 2"), (["--parts", "sflv1"], "--parts takes")],
)
def test_floor_refuses_bad_options(bad, message, capsys):
    sys.path.insert(0, str(BENCH))
    import floor

    with pytest.raises(SystemExit) as exc:
        floor.parse_args(bad)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_tree_sampler_counts_descendants(tmp_path):
    """A child that starts a grandchild holding 300 MiB: the tree's peaks include it."""
    sys.path.insert(0, str(BENCH))
    from proctree import run_tree

    grandchild = "import time; b = bytearray(300 * 2**20); time.sleep(2.5)"
    child = textwrap.dedent(
        f"""
        import subprocess, sys
        subprocess.run([sys.executable, "-c", {grandchild!r}], check=True)
        print("done", flush=True)
        """
    )
    run = run_tree([sys.executable, "-c", child], every=0.1, uss_every=0.5, timeout=60)
    assert run.returncode == 0 and run.lines[-1][1] == "done"
    m = run.memory
    assert m.peak_processes >= 2
    assert min(m.peak_rss, m.peak_anon, m.peak_uss) >= 300 * 2**20
    assert m.uss_samples >= 1 and m.uss_samples < m.samples  # USS swept less often


@pytest.mark.slow
@pytest.mark.ray
def test_flower_fedavg_our_side(shared_data, tmp_path):
    out = tmp_path / "ff.json"
    args = [str(BENCH / "flower_fedavg.py"), *TINY, "--only", "ours"]
    proc = _run([*args, "--data-dir", str(shared_data), "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = json.loads(out.read_text())["summary"]["ours"]
    assert ours["per_round_s"] > 0 and ours["first_round_s"] > ours["per_round_s"]
    assert ours["peak_uss"] > 2**28  # a Ray session with a ResNet-18: far above 256 MiB


@pytest.mark.slow
def test_flower_side_where_flower_is_installed(shared_data, tmp_path):
    sys.path.insert(0, str(BENCH))
    from flower_fedavg import DEFAULT_VENV, venv_ready

    if not os.environ.get("FSLSAGE_RAY_FLOWER_TESTS"):
        pytest.skip("set FSLSAGE_RAY_FLOWER_TESTS=1 to run Flower's side (about 2 minutes)")
    if not venv_ready(DEFAULT_VENV):
        pytest.skip(f"no Flower environment at {DEFAULT_VENV}: tests never install it")
    out = tmp_path / "ff.json"
    args = [str(BENCH / "flower_fedavg.py"), *TINY, "--only", "flower", "--no-install"]
    proc = _run([*args, "--data-dir", str(shared_data), "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    flower = result["summary"]["flower"]
    assert flower["first_round_s"] > 0 and flower["peak_uss"] > 2**28
    assert result["flower_env"]["versions"]["flwr"]
