"""run.stop_at_accuracy and run.max_minutes end a run after the round that meets them."""

from __future__ import annotations

from pathlib import Path

import pytest

from fslsage_ray.config import load_config
from fslsage_ray.simulation import Simulation, stop_reason

QUICK = [
    "runtime.backend=inprocess",
    "algorithm.num_clients=4",
    "data.train_subset=800",
    "data.test_subset=300",
    "run.rounds=30",
    "alignment.epochs=5",  # 100 (the default) took 85% of these runs; stopping is what is tested
]


def _run(tmp_path: Path, *extra: str) -> list[dict]:
    config = load_config(None, [*QUICK, *extra])
    return Simulation(config, run_dir=tmp_path / "run", progress=False).run().to_pylist()


def test_stops_at_the_first_round_that_reaches_the_target(tmp_path: Path) -> None:
    rows = _run(tmp_path, "run.stop_at_accuracy=0.8")
    accuracies = [r["test_acc"] for r in rows]
    assert accuracies[-1] >= 0.8
    assert all(a < 0.8 for a in accuracies[:-1])
    assert len(rows) < 30
    assert "reached the target 0.8" in (tmp_path / "run" / "run.log").read_text()


def test_a_target_never_reached_runs_every_round(tmp_path: Path) -> None:
    rows = _run(tmp_path, "run.stop_at_accuracy=1.0", "run.rounds=3")
    assert len(rows) == 3


def test_time_limit_stops_after_the_round_that_passes_it(tmp_path: Path) -> None:
    rows = _run(tmp_path, "run.max_minutes=0.000001")
    assert len(rows) == 1


@pytest.mark.parametrize(
    ("overrides", "row", "needle"),
    [
        (["run.max_gib=1"], {"comm_bytes_cum": 2**30, "test_acc": 0.1, "elapsed_s": 1}, "1.0 GiB"),
        (
            ["run.stop_at_accuracy=0.5"],
            {"comm_bytes_cum": 0, "test_acc": 0.5, "elapsed_s": 1},
            "0.5",
        ),
        (
            ["run.max_minutes=2"],
            {"comm_bytes_cum": 0, "test_acc": 0.1, "elapsed_s": 120},
            "2.0 min",
        ),
        ([], {"comm_bytes_cum": 2**40, "test_acc": 1.0, "elapsed_s": 1e9}, None),
        (
            ["run.stop_at_accuracy=0.5"],
            {"comm_bytes_cum": 0, "test_acc": 0.49, "elapsed_s": 1},
            None,
        ),
    ],
)
def test_stop_reason(overrides: list[str], row: dict, needle: str | None) -> None:
    reason = stop_reason(load_config(None, overrides).run, row)
    if needle is None:
        assert reason is None
    else:
        assert reason is not None and needle in reason
