"""Per-client state kept in memory up to a budget, the idle rest spilled to local disk.

With thousands of clients, most are idle in any round (partial participation) yet each
carries state between rounds: on its host, optimizer moments, an AM and an RNG; on the
server, FSL-SAGE's alignment buffer and AM optimizer, or SplitFed-MS/FSL-AN's server-model
copy. Above the budget the least recently used idle entries are written to disk as plain
tensors (a snapshot) and rebuilt when next needed; a rebuilt entry continues exactly as if it
had stayed in memory. An entry is built only when first used (one never used is its initial
state, which `build` gives again), and the entries in `keep` always stay in memory.

Within a round the same budget can hold participants too (runtime.stream_participants): an
owner then releases after each client's step, keeping only the clients still in flight, so
a round's participants stream through memory instead of all being resident at once. What an
entry holds only for the round (its batch order, its round statistics) is not part of its
snapshot; the owner's `aside` hook takes it out on a spill and `bring_back` puts it back, so
a client spilled mid-round continues its round exactly.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import torch


class Spillable(Protocol):
    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, snap: Mapping[str, Any]) -> None: ...


T = TypeVar("T", bound=Spillable)
GIB = 1024**3


def _nbytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


def budget_bytes(gib: float | None) -> float | None:
    """A config's budget in GiB (None: no limit) in bytes."""
    return None if gib is None else gib * GIB


class StateStore(Generic[T]):
    def __init__(
        self,
        build: Callable[[int], T],
        cids: Iterable[int],
        budget_bytes: float | None,
        prefix: str = "fslsage-clients-",
        aside: Callable[[T], Any] | None = None,
        bring_back: Callable[[T, Any], None] | None = None,
    ) -> None:
        """`aside(entry)`: what a spilled entry must keep beyond its snapshot (kept in memory,
        small; None: nothing), given back by `bring_back(entry, kept)` when it is rebuilt."""
        self._build = build
        self.cids = sorted(cids)
        self._known = frozenset(self.cids)
        self.budget = budget_bytes
        self.prefix = prefix
        self.resident: OrderedDict[int, T] = OrderedDict()  # least recently used first
        self.spilled: dict[int, Path] = {}
        self.entry_bytes: int | None = None  # one entry's state, measured once
        self.peak_resident = 0  # most entries in memory at once since `reset_peak`
        self._aside, self._bring_back = aside, bring_back
        self._kept_aside: dict[int, Any] = {}
        self._dir: Path | None = None

    def __contains__(self, cid: object) -> bool:
        return cid in self._known

    def reset_peak(self) -> None:
        self.peak_resident = len(self.resident)

    @property
    def built(self) -> list[int]:
        """Entries that ever left their initial state's shadow: in memory or on disk."""
        return sorted([*self.resident, *self.spilled])

    def get(self, cid: int) -> T:
        """The entry, built on first use or rebuilt from disk if it was spilled."""
        if cid not in self.resident:
            entry = self._build(cid)
            if cid in self.spilled:
                path = self.spilled.pop(cid)
                entry.restore(torch.load(path, map_location="cpu", weights_only=True))
                path.unlink()
            if cid in self._kept_aside and self._bring_back is not None:
                self._bring_back(entry, self._kept_aside.pop(cid))
            self.resident[cid] = entry
            self.peak_resident = max(self.peak_resident, len(self.resident))
        self.resident.move_to_end(cid)
        return self.resident[cid]

    @property
    def capacity(self) -> int | None:
        """Entries the budget holds (None: no budget; unknown before the first entry)."""
        if self.budget is None:
            return None
        if self.entry_bytes is None:
            if not self.resident:
                return None
            self.entry_bytes = max(1, _nbytes(next(iter(self.resident.values())).snapshot()))
        return int(self.budget // self.entry_bytes)

    def release(self, keep: Iterable[int]) -> None:
        """Spill least recently used entries (not in `keep`) until within the budget. Cheap
        when within it: an owner may call it after every client's step."""
        capacity = self.capacity
        if capacity is None or len(self.resident) <= capacity:
            return
        keep, excess, victims = set(keep), len(self.resident) - capacity, []
        for cid in self.resident:  # least recently used first
            if len(victims) == excess:
                break
            if cid not in keep:
                victims.append(cid)
        for cid in victims:
            self._spill(cid)

    def _spill(self, cid: int) -> None:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=self.prefix))
        path = self._dir / f"{cid}.pt"
        entry = self.resident.pop(cid)
        torch.save(entry.snapshot(), path)
        if self._aside is not None:
            kept = self._aside(entry)
            if kept is not None:
                self._kept_aside[cid] = kept
        self.spilled[cid] = path

    def snapshot(self, cid: int) -> dict[str, Any]:
        if cid in self.spilled:
            return torch.load(self.spilled[cid], map_location="cpu", weights_only=True)
        return self.get(cid).snapshot()

    def restore(self, cid: int, snap: Mapping[str, Any]) -> None:
        if cid in self.spilled:
            torch.save(dict(snap), self.spilled[cid])
        else:
            self.get(cid).restore(snap)

    def drop_aside(self) -> None:
        """Forget what spilled entries kept aside (their round is over)."""
        self._kept_aside.clear()

    def reset(self) -> None:
        """Every entry back to its initial state (built again on next use)."""
        for path in self.spilled.values():
            path.unlink(missing_ok=True)
        self.resident.clear()
        self.spilled.clear()
        self._kept_aside.clear()

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __del__(self) -> None:
        self.close()


class StateView(Mapping[int, Any]):
    """One attribute of every entry, as a read-only mapping by client id (entries are built
    or brought back from disk as they are read): for tests and tools that inspect state."""

    def __init__(self, store: StateStore, attr: str) -> None:
        self.store, self.attr = store, attr

    def __getitem__(self, cid: int) -> Any:
        if cid not in self.store:
            raise KeyError(cid)
        return getattr(self.store.get(cid), self.attr)

    def __iter__(self) -> Iterator[int]:
        return iter(self.store.cids)

    def __len__(self) -> int:
        return len(self.store.cids)
