"""Partial participation: clients drawn per round from the seed, the same on any layout."""

from __future__ import annotations

import pytest
from run_helpers import SMALL, assert_same_learning, run_small

from fslsage_ray.algorithms.participation import participant_count, participants
from fslsage_ray.config import ConfigError, load_config
from fslsage_ray.experiment import planned_sizes
from fslsage_ray.plan import plan_rounds

PARTIAL = ["algorithm.clients_per_round=3", "run.rounds=3"]


def test_counts_and_fractions():
    assert participant_count(10, None) == 10
    assert participant_count(10, 3) == 3
    assert participant_count(10, 0.25) == 2
    assert participant_count(10, 0.01) == 1  # at least one client
    assert participant_count(10, 1.0) == 10


def test_draws_depend_only_on_seed_and_round():
    a = [participants(t, 100, 10, seed=200) for t in range(5)]
    b = [participants(t, 100, 10, seed=200) for t in range(5)]
    assert a == b
    assert len({tuple(x) for x in a}) == 5  # rounds differ
    assert all(len(x) == 10 == len(set(x)) and x == sorted(x) for x in a)
    assert participants(0, 100, 10, seed=201) != a[0]


@pytest.mark.parametrize("value", ["0", "11", "1.5", "-0.5"])
def test_impossible_participation_is_refused(value):
    with pytest.raises(ConfigError, match="clients_per_round"):
        load_config(None, ["algorithm.num_clients=10", f"algorithm.clients_per_round={value}"])


@pytest.mark.parametrize("method", ["fsl_sage", "sflv1", "sflv2", "fedavg"])
def test_partial_rounds_cost_what_the_plan_says(run_cache, method):
    extra = ["runtime.backend=inprocess", f"algorithm.name={method}", *PARTIAL]
    rows = run_cache([*SMALL, *extra])
    assert [r["participants"] for r in rows] == [3, 3, 3]
    config = load_config(None, [*SMALL, *extra])
    sizes, model = planned_sizes(config)
    plan = plan_rounds(config, sizes, model, 3)
    assert [r["comm_bytes"] for r in rows] == [p["total"] for p in plan["rounds"]]


@pytest.mark.ray
def test_partial_participation_is_identical_on_three_actors(tmp_path, ray_local, run_cache):
    reference = run_cache([*SMALL, "runtime.backend=inprocess", *PARTIAL])
    three = run_small(tmp_path / "three", "runtime.num_actors=3", *PARTIAL)
    assert_same_learning(reference, three)
