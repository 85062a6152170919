"""One round schedule: the run, `plan` (bytes) and `simtime` (replayed time) take part in
the same rounds with the same clients, with partial participation and availability."""

from __future__ import annotations

from collections import Counter

from fslsage_ray.algorithms.participation import participants
from fslsage_ray.config import load_config
from fslsage_ray.experiment import planned_sizes
from fslsage_ray.plan import plan_rounds
from fslsage_ray.simulation import Simulation
from fslsage_ray.system.devices import available, client_devices
from fslsage_ray.system.replay import replay_rounds
from fslsage_ray.system.schedule import RoundSchedule

PARTIAL_AND_AWAY = [
    "runtime.backend=inprocess",
    "algorithm.num_clients=6",
    "algorithm.clients_per_round=4",
    "algorithm.batch_size=32",
    "algorithm.upload_every=2",
    "alignment.every=2",
    "alignment.epochs=2",
    "alignment.buffer_size=200",  # the buffer fills over rounds: uploads before count
    "data.train_subset=480",
    "data.test_subset=120",
    "run.rounds=4",
    "run.checkpoint_every=0",
    "system.profile=mobile",
    "system.availability=0.6",
]


def test_the_run_plan_and_replay_follow_one_schedule(tmp_path):
    config = load_config(None, PARTIAL_AND_AWAY)
    sim = Simulation(config, run_dir=tmp_path / "run", progress=False)
    rows = sim.run().to_pylist()
    schedule = RoundSchedule.of(config, 6)
    who = [schedule.clients(t) for t in range(4)]
    assert [r["participants"] for r in rows] == [len(w) for w in who]
    assert any(len(w) < 4 for w in who)  # availability took some of the chosen out
    client_sizes, sizes = planned_sizes(config)
    plan = plan_rounds(config, client_sizes, sizes, 4)
    assert [r["comm_bytes"] for r in rows] == [p["total"] for p in plan["rounds"]]
    replayed = replay_rounds(config, 4)
    for column in ("sim_round_s", "sim_time_s", "sim_slowest_client"):
        assert [r[column] for r in rows] == [r[column] for r in replayed], column


def test_clients_are_the_drawn_participants_that_are_available():
    config = load_config(None, PARTIAL_AND_AWAY)
    devices = client_devices(config.system, 6, config.run.seed)
    schedule = RoundSchedule.of(config, 6)
    for t in range(20):
        chosen = participants(t, 6, 4, config.run.seed)
        assert schedule.clients(t) == available(t, chosen, devices, config.run.seed)
    without_system = load_config(None, [*PARTIAL_AND_AWAY[:-2]])
    assert RoundSchedule.of(without_system, 6).devices is None
    assert RoundSchedule.of(without_system, 6).clients(3) == participants(3, 6, 4, 200)


def test_rounds_taken_before_count_earlier_rounds_even_after_going_back():
    schedule = RoundSchedule(num_clients=6, clients_per_round=2, seed=7)
    fresh = RoundSchedule(num_clients=6, clients_per_round=2, seed=7)
    expected = Counter(c for t in range(5) for c in fresh.clients(t))
    assert schedule.rounds_taken_before(8) != expected  # counted ahead ...
    assert schedule.rounds_taken_before(5) == expected  # ... and back (a recovery)
    uploaded = schedule.uploaded_before(5, [10, 20, 30, 40, 50, 60])
    assert [uploaded(c) for c in range(6)] == [expected[c] * 10 * (c + 1) for c in range(6)]
