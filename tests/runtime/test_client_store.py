"""Idle clients spilled to disk above a memory budget come back exactly as they left, on
their hosts and on the server (FSL-SAGE's buffers and AMs, SplitFed-MS's server copies)."""

from __future__ import annotations

import pytest
from run_helpers import assert_same_learning, run_small

from fslsage_ray.algorithms.state_store import StateStore
from fslsage_ray.runtime.client_host import ClientHost
from fslsage_ray.runtime.client_store import ClientStore

MANY = [
    "algorithm.num_clients=20",
    "algorithm.clients_per_round=4",
    "run.rounds=4",
    "runtime.backend=inprocess",
    "run.checkpoint_every=2",
]


def test_spilling_idle_clients_changes_no_result(tmp_path, monkeypatch):
    reference = run_small(tmp_path / "memory", *MANY)
    seen: list[tuple[int, int]] = []
    original = ClientHost.finish_round

    def finish_round(self):
        results = original(self)
        seen.append((len(self.store.resident), len(self.store.spilled)))
        return results

    monkeypatch.setattr(ClientHost, "finish_round", finish_round)
    # A budget of about 3 clients' state: most of the 20 live on disk between rounds.
    spilled = run_small(tmp_path / "disk", *MANY, "runtime.client_state_budget_gb=0.00004")
    assert_same_learning(reference, spilled)
    # clients are built when first chosen: only those that ever took part are kept anywhere
    assert all(resident <= 4 and resident + on_disk <= 20 for resident, on_disk in seen)
    assert [on_disk for _, on_disk in seen] == sorted(on_disk for _, on_disk in seen)
    assert seen[-1][1] >= 8


@pytest.mark.parametrize("method", ["fsl_sage", "sflv1"])
def test_spilling_idle_server_state_changes_no_result(tmp_path, monkeypatch, method):
    """Per-client server state above runtime.server_state_budget_gb goes to disk between
    rounds; the run learns exactly what it learns with everything in memory."""
    few = [*MANY, f"algorithm.name={method}", "run.rounds=3", "run.checkpoint_every=0"]
    reference = run_small(tmp_path / "memory", *few)
    seen: list[int] = []
    release = StateStore.release

    def spy(self, keep):
        release(self, keep)
        if self.prefix.startswith("fslsage-server"):
            seen.append(len(self.spilled))

    monkeypatch.setattr(StateStore, "release", spy)
    spilled = run_small(tmp_path / "disk", *few, "runtime.server_state_budget_gb=0")
    assert_same_learning(reference, spilled)
    assert seen and seen[-1] >= 4  # every client that took part is on disk between rounds


class _Fake:
    def __init__(self, cid: int) -> None:
        self.cid, self.value = cid, cid * 10

    def snapshot(self):
        import torch

        return {"value": torch.tensor([self.value], dtype=torch.float64)}

    def restore(self, snap):
        self.value = int(snap["value"][0])


def test_store_keeps_participants_and_evicts_least_recently_used():
    store = ClientStore(_Fake, range(6), budget_bytes=2 * 8)  # room for two
    assert not store.resident and not store.spilled  # nothing is built before it is used
    for cid in range(6):
        store.get(cid)
        store.release(keep=())
    assert len(store.resident) == 2 and len(store.spilled) == 4
    store.get(0).value = 99  # rebuilt from disk, changed, then used again later
    for cid in (1, 2, 3):
        store.get(cid)
    store.release(keep=(1, 2, 3))  # participants stay even above the budget
    assert set(store.resident) == {1, 2, 3}
    assert store.get(0).value == 99  # came back from disk as it left
    assert store.snapshot(5)["value"].item() == 50  # readable without loading
    store.close()


@pytest.mark.parametrize("budget", [None, 0.0])
def test_no_budget_keeps_everyone_and_zero_budget_keeps_only_participants(budget):
    store = ClientStore(_Fake, range(3), budget_bytes=budget)
    for cid in (0, 2, 1):
        store.get(cid)
    store.release(keep=(1,))
    expected = {0, 1, 2} if budget is None else {1}
    assert set(store.resident) == expected
    store.close()
