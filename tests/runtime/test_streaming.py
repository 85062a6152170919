"""A round's participants streamed through the state budgets (runtime.stream_participants):
loaded before a client steps and spilled after, on the client hosts and on the server, the
run learns exactly what it learns with every participant in memory, and memory holds no more
participants than the budget and the steps in flight."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from run_helpers import assert_same_learning, run_small

from fslsage_ray.algorithms.aggregate import RunningAverage, weighted_average
from fslsage_ray.algorithms.state_store import StateStore
from fslsage_ray.config import load_config
from fslsage_ray.outputs.checkpoint import CHECKPOINT_FILE
from fslsage_ray.runtime import backend as backend_module
from fslsage_ray.runtime.backend import job_windows
from fslsage_ray.runtime.client_host import ClientHost
from fslsage_ray.runtime.server_host import ServerHost
from fslsage_ray.runtime.state_file import StatesReader
from fslsage_ray.simulation import Simulation

# Every client in every round, four local iterations each (iteration-major: a streamed
# client is loaded again for each), server jobs two clients at a time.
ALL = [
    "algorithm.clients_per_round=null",
    "run.rounds=2",  # round 0 aligns (FSL-SAGE), round 1 does not
    "runtime.job_window=2",
    "run.checkpoint_every=0",
]
IN_MEMORY = ["runtime.stream_participants=false"]
STREAMED = ["runtime.client_state_budget_gb=0", "runtime.server_state_budget_gb=0"]


def _peaks(monkeypatch) -> dict[str, list[int]]:
    """The most entries each kind of store held at once, per round (client hosts: between
    start_round and finish_round; the server: a whole round)."""
    peaks: dict[str, list[int]] = {"clients": [], "server": []}
    finish, release = ClientHost.finish_round, StateStore.release

    def finish_round(self):
        results = finish(self)
        peaks["clients"].append(self.store.peak_resident)
        return results

    def spy(self, keep):
        release(self, keep)
        if self.prefix.startswith("fslsage-server") and not keep:
            peaks["server"].append(self.peak_resident)

    monkeypatch.setattr(ClientHost, "finish_round", finish_round)
    monkeypatch.setattr(StateStore, "release", spy)
    return peaks


@pytest.mark.parametrize("method", ["fsl_sage", "sflv1", "fsl_an"])
def test_streamed_participants_learn_exactly_what_resident_ones_learn(
    tmp_path, monkeypatch, method
):
    run = [*ALL, "runtime.backend=inprocess", f"algorithm.name={method}"]
    reference = run_small(tmp_path / "memory", *run, *IN_MEMORY)
    peaks = _peaks(monkeypatch)
    streamed = run_small(tmp_path / "streamed", *run, *STREAMED)
    assert_same_learning(reference, streamed)
    # A zero budget: in one process one client is in flight at a time, so a host holds the
    # client stepping and at most the one it loads next, never the 5 participants.
    assert peaks["clients"] and max(peaks["clients"]) <= 2
    if method != "fsl_an":  # FSL-AN keeps server copies too; checked with sflv1's
        assert peaks["server"] and max(peaks["server"]) <= 2


def test_without_streaming_every_participant_stays_in_memory(tmp_path, monkeypatch):
    """The measurement above can fail: the in-memory path holds all 5 participants."""
    peaks = _peaks(monkeypatch)
    run_small(tmp_path / "memory", *ALL, "runtime.backend=inprocess", *IN_MEMORY, *STREAMED)
    assert max(peaks["clients"]) == 5


def test_a_held_step_stays_in_memory_and_client_major_order_is_kept(tmp_path):
    """FSL-SAGE in the authors' order holds a client's first step until its AM is fitted;
    that client is never spilled with its autograd graph, and the numbers are unchanged."""
    run = [*ALL, "runtime.backend=inprocess", "algorithm.server_order=client_major"]
    reference = run_small(tmp_path / "memory", *run, *IN_MEMORY)
    assert_same_learning(reference, run_small(tmp_path / "streamed", *run, *STREAMED))


def test_streamed_checkpoints_hold_the_same_state_and_resume_exactly(tmp_path):
    run = [*ALL, "runtime.backend=inprocess", "algorithm.name=sflv1", "run.checkpoint_every=1"]
    straight = run_small(tmp_path / "straight", *run, *STREAMED, "run.rounds=3")
    run_small(tmp_path / "memory", *run, *IN_MEMORY, "run.rounds=2")
    run_small(tmp_path / "stopped", *run, *STREAMED, "run.rounds=2")
    _assert_same_state(_held(tmp_path / "memory"), _held(tmp_path / "stopped"))
    resumed = Simulation.resume(tmp_path / "stopped", ["run.rounds=3"], progress=False).run()
    assert_same_learning(straight, resumed.to_pylist())


def test_a_checkpoint_moves_participants_a_chunk_at_a_time(tmp_path, monkeypatch):
    """Neither the driver nor a host ever holds every participant's state for a checkpoint:
    with a chunk of one record, each host hands over and takes back one state per call, and
    a restore spills as it goes (a zero budget: at most the state being restored is in
    memory); the resumed run continues exactly."""
    run = [*ALL, "runtime.backend=inprocess", "algorithm.name=sflv1", "run.checkpoint_every=1"]
    straight = run_small(tmp_path / "straight", *run, *STREAMED, "run.rounds=3")
    monkeypatch.setattr(backend_module, "CHUNK_BYTES", 1)
    chunks: list[int] = []
    resident: list[int] = []
    for host in (ClientHost, ServerHost):
        give, take = host.snapshot_entries, host.restore_entries

        def snapshot_entries(self, cids, give=give):
            chunks.append(len(cids))
            return give(self, cids)

        def restore_entries(self, snaps, take=take):
            chunks.append(len(snaps))
            take(self, snaps)
            store = self.store if isinstance(self, ClientHost) else self.server.states
            resident.append(len(store.resident))

        monkeypatch.setattr(host, "snapshot_entries", snapshot_entries)
        monkeypatch.setattr(host, "restore_entries", restore_entries)
    run_small(tmp_path / "stopped", *run, *STREAMED, "run.rounds=2")
    saved = len(chunks)
    resumed = Simulation.resume(tmp_path / "stopped", ["run.rounds=3"], progress=False).run()
    assert_same_learning(straight, resumed.to_pylist())
    # 5 clients and 5 server copies per checkpoint (2 saved), then 10 restored, one per call
    assert saved == 2 * 10 and len(chunks) == 3 * 10 + 10 and set(chunks) == {1}
    assert resident and max(resident) == 0


def _held(run_dir):
    """A checkpoint's workers' state: the shared part and every record of its states file."""
    backend = torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)["backend"]
    states = StatesReader(run_dir, backend["states"])
    return {
        "server": backend["server"],
        "clients": dict(states.items("clients")),
        "entries": dict(states.items("server")),
    }


def _assert_same_state(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same_state(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same_state(x, y)
    else:
        assert a == b


@pytest.mark.ray
def test_streamed_on_ray_actors_learn_what_one_process_learns(tmp_path, ray_local):
    run = [*ALL, "algorithm.name=fsl_sage", "runtime.num_actors=2"]
    reference = run_small(tmp_path / "memory", *run, "runtime.backend=inprocess", *IN_MEMORY)
    streamed = run_small(tmp_path / "ray", *run, *STREAMED)
    assert_same_learning(reference, streamed)


def test_running_average_gives_the_bits_of_the_whole_list():
    gen = torch.Generator().manual_seed(0)
    states = [
        {"w": torch.randn(3, 4, generator=gen), "n": torch.tensor(k, dtype=torch.int64)}
        for k in range(7)
    ]
    weights = [0.1, 0.2, 0.05, 0.15, 0.3, 0.1, 0.1]
    total = RunningAverage()
    for state, weight in zip(states, weights, strict=True):
        total.add(state, weight)
    whole = weighted_average(states, weights)
    assert all(torch.equal(whole[k], v) for k, v in total.result().items())


@pytest.mark.parametrize(
    ("window", "group", "sizes"), [(512, 1, [5]), (2, 1, [2, 2, 1]), (5, 2, [4, 1]), (1, 3, [3, 2])]
)
def test_job_windows_are_in_client_order_and_whole_groups(window, group, sizes):
    config = load_config(None, [f"runtime.job_window={window}", f"alignment.group_size={group}"])
    windows = job_windows([0, 1, 2, 3, 4], config)
    assert [len(w) for w in windows] == sizes
    assert [c for w in windows for c in w] == [0, 1, 2, 3, 4]


@pytest.mark.ray
def test_a_ray_run_leaves_no_spill_folders_behind(tmp_path, ray_local):
    """Actors are ended with ray.kill, which runs no finalizer: each deletes its spill
    folder first (a 10,000-client run left 7 GB in the temporary folder before)."""
    temp = Path(tempfile.gettempdir())

    def spill_folders() -> set[Path]:
        return {*temp.glob("fslsage-clients-*"), *temp.glob("fslsage-server-*")}

    before = spill_folders()
    # a zero budget: the 2 client actors and the server actor spill every participant
    run_small(tmp_path / "run", *ALL, "algorithm.name=sflv1", "runtime.num_actors=2", *STREAMED)
    assert not spill_folders() - before
