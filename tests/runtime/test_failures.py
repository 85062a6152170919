"""Faults during a run lose no completed work and do not change the results.

Each test kills (or hangs) a REAL Ray actor at the start of round 2, after the round's
state was broadcast. The coordinator must notice, replace every actor, restore the last
checkpoint (round 1), redo round 2 and go on; the metrics must equal an undisturbed run's.
"""

from __future__ import annotations

import time

import pytest
import ray
from run_helpers import SMALL, assert_same_learning, run_small

from fslsage_ray.runtime.ray_backend import RayBackend

pytestmark = pytest.mark.ray
ROUNDS = ["run.rounds=4", "run.checkpoint_every=1"]


def _inject(monkeypatch, fault) -> list[int]:
    """Call fault(backend) once, right after round 2's start_round; returns a call log."""
    calls: list[int] = []
    original = RayBackend.start_round

    def start_round(self, *args):
        original(self, *args)
        calls.append(1)
        if len(calls) == 3:
            fault(self)

    monkeypatch.setattr(RayBackend, "start_round", start_round)
    return calls


def test_a_killed_client_actor_is_replaced_and_its_round_redone(
    tmp_path, ray_local, monkeypatch, run_cache
):
    reference = run_cache([*SMALL, "runtime.backend=inprocess", *ROUNDS])
    calls = _inject(monkeypatch, lambda backend: ray.kill(backend.actors[1]))
    rows = run_small(tmp_path / "killed", "runtime.num_actors=2", *ROUNDS)
    assert len(calls) == 5  # rounds 0, 1, 2 (killed), 2 again, 3
    assert_same_learning(reference, rows)
    assert "worker lost" in (tmp_path / "killed" / "run.log").read_text()


def test_a_killed_server_actor_is_replaced_from_the_checkpoint(
    tmp_path, ray_local, monkeypatch, run_cache
):
    reference = run_cache([*SMALL, "runtime.backend=inprocess", *ROUNDS])
    _inject(monkeypatch, lambda backend: ray.kill(backend.server_actor))
    rows = run_small(tmp_path / "killed", "runtime.num_actors=2", *ROUNDS)
    assert_same_learning(reference, rows)


def test_fedavg_runs_without_a_server_actor_and_recovers_from_a_lost_client_actor(
    tmp_path, ray_local, monkeypatch
):
    """FedAvg sends nothing to a main server, so no server actor is started (its round
    bookkeeping and evaluation models are the driver's); a lost actor is still replaced
    and the numbers are the in-process ones."""
    fedavg = ["algorithm.name=fedavg", *ROUNDS]
    reference = run_small(tmp_path / "ref", "runtime.backend=inprocess", *fedavg)
    servers: list = []

    def kill(backend: RayBackend) -> None:
        plan = backend.layout
        servers.append((backend.server_actor, plan.server_bundle, len(plan.bundles())))
        ray.kill(backend.actors[0])

    calls = _inject(monkeypatch, kill)
    # A server CPU asked for is not reserved: no actor would use it.
    rows = run_small(
        tmp_path / "killed", "runtime.num_actors=2", "runtime.server_num_cpus=1", *fedavg
    )
    assert len(calls) == 5 and servers == [(None, None, 2)]
    assert_same_learning(reference, rows)
    log = (tmp_path / "killed" / "run.log").read_text()
    assert "no server actor" in log and "worker lost" in log


@pytest.mark.slow  # the kill/replace tests above keep the recovery path in the quick suite
def test_a_hung_actor_is_detected_by_timeout(tmp_path, ray_local, monkeypatch, run_cache):
    reference = run_cache([*SMALL, "runtime.backend=inprocess", *ROUNDS])

    def hang(backend):  # the actor runs one call at a time: this blocks its next call
        backend.actors[0].__ray_call__.remote(lambda actor: time.sleep(120))

    _inject(monkeypatch, hang)
    start = time.monotonic()
    rows = run_small(tmp_path / "hung", "runtime.num_actors=2", "runtime.call_timeout_s=5", *ROUNDS)
    assert time.monotonic() - start < 100  # did not wait for the hung call
    assert_same_learning(reference, rows)


@pytest.mark.slow
def test_repeated_losses_stop_the_run_with_a_resumable_folder(
    tmp_path, ray_local, monkeypatch, capsys
):
    from fslsage_ray.cli import main

    original = RayBackend.run_local

    def always_lose(self, start, stop, *args, **kwargs):
        ray.kill(self.actors[0])
        return original(self, start, stop, *args, **kwargs)

    monkeypatch.setattr(RayBackend, "run_local", always_lose)
    out = tmp_path / "doomed"
    code = main(
        [
            "run",
            "--quiet",
            "--out",
            str(out),
            "runtime.max_restarts=1",
            "alignment.epochs=5",
            "runtime.actor_num_cpus=0.5",
            "runtime.server_num_cpus=0.5",
            "data.train_subset=300",
            "algorithm.num_clients=3",
            "run.rounds=2",
        ]
    )
    assert code == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "checkpoint.pt").is_file() and (out / "config.yaml").is_file()
    monkeypatch.setattr(RayBackend, "run_local", original)  # the fault is gone: resume works
    assert main(["run", "--quiet", "--resume", str(out)]) == 0
    assert "2 rounds" in capsys.readouterr().out
