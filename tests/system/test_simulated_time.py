"""Simulated time in real runs: no training number moves, the layout does not matter, and
the messages the ledger books are the ones planned from sizes alone."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fslsage_ray.config import load_config
from fslsage_ray.experiment import planned_sizes
from fslsage_ray.system.events import planned_messages
from fslsage_ray.system.replay import replay_rounds

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from run_helpers import SMALL, assert_same_learning, run_small  # noqa: E402

SIM = ["run.rounds=2", "system.profile=mobile"]


def _sim(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k.startswith("sim_")} for r in rows]


def test_simulated_time_moves_no_training_number_and_replays_from_sizes(tmp_path):
    plain = run_small(tmp_path / "plain", "runtime.backend=inprocess", "run.rounds=2")
    inproc = run_small(tmp_path / "inproc", "runtime.backend=inprocess", *SIM)
    assert "sim_time_s" not in plain[0]
    assert_same_learning(plain, inproc)  # the system model changes no training number
    assert inproc[1]["sim_time_s"] == inproc[0]["sim_round_s"] + inproc[1]["sim_round_s"]
    # The booked messages replay to the same seconds as those planned from sizes alone.
    config = load_config(None, [*SMALL, *SIM])
    assert [r["sim_round_s"] for r in replay_rounds(config, 2)] == [
        r["sim_round_s"] for r in inproc
    ]


@pytest.mark.ray
@pytest.mark.slow  # quick: tests/probes/test_no_effect.py compares every sim_ column on 3 actors
def test_simulated_time_is_the_same_in_process_and_on_3_actors(tmp_path, ray_local):
    # Round 0 aligns (server jobs), the part most likely to differ by layout.
    inproc = run_small(tmp_path / "inproc", "runtime.backend=inprocess", *SIM, "run.rounds=1")
    three = run_small(tmp_path / "three", "runtime.num_actors=3", *SIM, "run.rounds=1")
    assert _sim(three) == _sim(inproc) and "sim_time_s" in three[0]


@pytest.mark.parametrize("name", ["fsl_sage", "cse_fsl", "sflv1", "fedavg"])
def test_planned_messages_add_up_to_the_planned_bytes(name):
    from fslsage_ray.algorithms.registry import get_algorithm

    config = load_config(None, [*SMALL, f"algorithm.name={name}", "run.count_labels=true"])
    client_sizes, sizes = planned_sizes(config)
    algorithm = get_algorithm(config)
    members = dict(enumerate(client_sizes))
    for t in (0, 1):
        totals: dict[str, int] = {}
        for m in planned_messages(algorithm, t, members, sizes):
            totals[m.kind] = totals.get(m.kind, 0) + m.nbytes
        assert totals == algorithm.plan_round_bytes(t, client_sizes, sizes)


def test_availability_decides_who_trains_and_the_plan_follows(tmp_path):
    from fslsage_ray.plan import plan_rounds
    from fslsage_ray.simulation import Simulation

    config = load_config(
        None,
        [
            *SMALL,
            "runtime.backend=inprocess",
            "run.rounds=3",
            "algorithm.name=cse_fsl",
            "system.profile=mobile",
            "system.availability=0.5",
        ],
    )
    rows = Simulation(config, run_dir=tmp_path / "r", progress=False).run().to_pylist()
    assert [r["participants"] for r in rows] != [5, 5, 5]
    client_sizes, sizes = planned_sizes(config)
    plan = plan_rounds(config, client_sizes, sizes, 3)
    assert [r["comm_bytes"] for r in rows] == [r["total"] for r in plan["rounds"]]
    assert [r["sim_round_s"] for r in rows] == [r["sim_round_s"] for r in replay_rounds(config, 3)]
