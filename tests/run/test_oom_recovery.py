"""Out of memory survived: told apart from other failures, restarted with less, same numbers.

The Ray tests raise a real torch.OutOfMemoryError inside real actors (tests/run/oom_fault.py,
loaded by every actor as a plugin and armed from the driver at round 1's start); the run must
restart the actors with the next smaller setting, say so in one run.log line, redo the round
and end with the metrics of an undisturbed run. A second failure at the smallest setting, or
one in the driver's own process (in-process backend), stops with one line and a checkpoint
that `--resume` continues to the undisturbed run's metrics.
"""

from __future__ import annotations

import dataclasses

import pytest
import ray
import torch

from fslsage_ray.config import config_to_dict, load_config
from fslsage_ray.config.schema import RuntimeConfig
from fslsage_ray.errors import RunStopped
from fslsage_ray.outputs.checkpoint import config_differences
from fslsage_ray.runtime import ray_backend
from fslsage_ray.runtime.backend import Backend
from fslsage_ray.runtime.client_host import ClientHost
from fslsage_ray.runtime.oom import (
    ActorOutOfMemory,
    OutOfMemory,
    out_of_memory_in,
    smaller_setting,
)
from fslsage_ray.simulation import Simulation
from tests.run.oom_fault import SWITCH, FaultSwitch
from tests.runtime.run_helpers import SMALL, assert_same_learning, run_small

ROUNDS = ["run.rounds=3", "run.checkpoint_every=1"]
FAULT = ["plugins=[tests.run.oom_fault]", "runtime.num_actors=2", *ROUNDS]


def _arm_at_round_1(monkeypatch, arm) -> list[int]:
    """Call arm() right after round 1's start_round (once); returns a call log."""
    calls: list[int] = []
    original = Backend.start_round

    def start_round(self, *args):
        original(self, *args)
        calls.append(1)
        if len(calls) == 2:
            arm()

    monkeypatch.setattr(Backend, "start_round", start_round)
    return calls


@pytest.fixture
def switch(ray_local):
    switch = FaultSwitch.options(name=SWITCH).remote()
    yield switch
    ray.kill(switch)


# --- the policy and the recognition, without a run ----------------------------------------------
def test_the_window_halves_to_one_then_idle_state_goes_to_disk_then_nothing_is_left():
    runtime, changes = RuntimeConfig(max_inflight_uploads=8), []
    while (shrink := smaller_setting(runtime, "client")) is not None:
        runtime, changes = shrink.runtime, [*changes, shrink.change]
    assert changes == [
        "runtime.max_inflight_uploads 8 -> 4",
        "runtime.max_inflight_uploads 4 -> 2",
        "runtime.max_inflight_uploads 2 -> 1",
        "runtime.client_state_budget_gb null (all in memory) -> 0.0",
    ]
    # the server's own state is lowered only for a server's failure, or when Ray did not say
    assert runtime.server_state_budget_gb is None
    assert smaller_setting(runtime, "server").change.startswith("runtime.server_state_budget")
    assert smaller_setting(runtime, None).runtime.server_state_budget_gb == 0.0


def test_every_smaller_setting_is_one_a_resume_accepts():
    """Only layout settings are lowered: a checkpoint made before (or after) the change
    continues under the other."""
    config = load_config(None, SMALL)
    runtime = config.runtime
    while (shrink := smaller_setting(runtime, None)) is not None:
        runtime = shrink.runtime
        changed = dataclasses.replace(config, runtime=runtime)
        assert config_differences(config_to_dict(config), changed) == [], shrink.change


def test_an_out_of_memory_error_is_found_through_nested_actor_calls_and_others_are_not():
    class TaskError(Exception):  # the shape of Ray's RayTaskError: the actor's error as `cause`
        def __init__(self, cause):
            self.cause = cause

    server = ActorOutOfMemory("server", "server actor", "OutOfMemoryError: CUDA out of memory")
    found = out_of_memory_in(TaskError(TaskError(server)))  # a client waited on the server
    assert isinstance(found, OutOfMemory) and found.role == "server"
    assert "server actor" in str(found) and "CUDA out of memory" in str(found)
    assert out_of_memory_in(TaskError(MemoryError())).role is None
    assert out_of_memory_in(TaskError(RuntimeError("shape mismatch"))) is None


def test_a_worker_killed_by_rays_memory_monitor_is_an_out_of_memory_failure(monkeypatch):
    def killed(refs, timeout):
        raise ray.exceptions.OutOfMemoryError("Task was killed due to the node running low")

    monkeypatch.setattr(ray_backend.ray, "get", killed)
    backend = ray_backend.RayBackend(RuntimeConfig())
    with pytest.raises(OutOfMemory, match="memory monitor"):
        backend._get([ray.ObjectRef.nil()])


# --- real runs ------------------------------------------------------------------------------
@pytest.mark.ray
def test_a_client_actor_out_of_memory_is_restarted_with_half_the_window(
    tmp_path, switch, monkeypatch, run_cache
):
    reference = run_cache([*SMALL, "runtime.backend=inprocess", *ROUNDS])
    calls = _arm_at_round_1(monkeypatch, lambda: ray.get(switch.arm.remote("client", 1)))
    rows = run_small(tmp_path / "oom", *FAULT)
    assert ray.get(switch.fired_count.remote()) == 1 and len(calls) == 4  # round 1 twice
    assert_same_learning(reference, rows)
    lines = [x for x in (tmp_path / "oom" / "run.log").read_text().splitlines() if "memory" in x]
    assert any(
        "out of memory in the client actor hosting clients" in x
        and "OutOfMemoryError" in x
        and "runtime.max_inflight_uploads 8 -> 4" in x
        and "redoing rounds after 0" in x
        for x in lines
    ), lines
    assert "worker lost" not in (tmp_path / "oom" / "run.log").read_text()


@pytest.mark.ray
@pytest.mark.slow  # two Ray starts and a resume (about a minute); the test above keeps the
# recovery through real actors in the quick suite
def test_a_second_failure_at_the_smallest_setting_stops_resumably(
    tmp_path, switch, monkeypatch, run_cache
):
    """The server runs out at window 2, then again at 1 with its state already on disk:
    nothing smaller is left, so the run stops with one line; the resume, with the memory
    back, ends with the undisturbed run's metrics."""
    reference = run_cache([*SMALL, "runtime.backend=inprocess", *ROUNDS])
    _arm_at_round_1(monkeypatch, lambda: ray.get(switch.arm.remote("server", 2)))
    smallest = ["runtime.max_inflight_uploads=2", "runtime.server_state_budget_gb=0"]
    with pytest.raises(RunStopped) as stop:
        run_small(tmp_path / "oom", *FAULT, *smallest)
    line = str(stop.value)
    assert "\n" not in line and "out of memory in the server actor" in line
    assert "smallest setting (runtime.max_inflight_uploads=1" in line and "--resume" in line
    log = (tmp_path / "oom" / "run.log").read_text()
    assert "runtime.max_inflight_uploads 2 -> 1" in log
    assert ray.get(switch.fired_count.remote()) == 2
    monkeypatch.undo()  # the memory is back
    rows = Simulation.resume(tmp_path / "oom", progress=False).run().to_pylist()
    assert_same_learning(reference, rows)


def test_in_process_out_of_memory_stops_with_a_checkpoint_that_resumes_exactly(
    tmp_path, monkeypatch, run_cache
):
    """One process cannot be restarted with less: stop, keep round 0, resume to the end."""
    inprocess = [*SMALL, "runtime.backend=inprocess", *ROUNDS]
    reference = run_cache(inprocess)
    armed: list[bool] = []
    _arm_at_round_1(monkeypatch, lambda: armed.append(True))
    original = ClientHost.run_local

    def run_local(self, *args, **kwargs):
        if armed:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ClientHost, "run_local", run_local)
    config = load_config(None, inprocess)
    with pytest.raises(RunStopped) as stop:
        Simulation(config, run_dir=tmp_path / "oom", progress=False).run()
    line = str(stop.value)
    assert "\n" not in line and line.startswith("out of memory in the driver process")
    assert "OutOfMemoryError: CUDA out of memory" in line and "--resume" in line
    monkeypatch.undo()
    resumed = Simulation.resume(tmp_path / "oom", progress=False)
    assert resumed.folder.resumed["round"] == 0
    assert_same_learning(reference, resumed.run().to_pylist())
