"""A host's clients: in memory up to a budget, the idle rest spilled to local disk.

With thousands of clients, most are idle in any round (partial participation) yet each
carries optimizer moments, an AM and an RNG between rounds. Above the budget the least
recently used idle clients are written to disk as plain tensors (a snapshot) and rebuilt
when next scheduled; a rebuilt client continues exactly as if it had stayed in memory.
This round's participants are always kept in memory.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from fslsage_ray.algorithms.base import Client


def _nbytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


class ClientStore:
    def __init__(
        self, build: Callable[[int], Client], cids: Iterable[int], budget_bytes: float | None
    ) -> None:
        self._build = build
        self.cids = sorted(cids)
        self.budget = budget_bytes
        self.resident: OrderedDict[int, Client] = OrderedDict()  # least recently used first
        self.spilled: dict[int, Path] = {}
        self.client_bytes: int | None = None  # one client's state, measured once
        self._dir: Path | None = None
        for cid in self.cids:
            self.resident[cid] = build(cid)
            self.release(keep=())

    def get(self, cid: int) -> Client:
        """The client, rebuilt from disk if it was spilled."""
        if cid in self.spilled:
            client = self._build(cid)
            path = self.spilled.pop(cid)
            client.restore(torch.load(path, map_location="cpu", weights_only=True))
            path.unlink()
            self.resident[cid] = client
        self.resident.move_to_end(cid)
        return self.resident[cid]

    def release(self, keep: Iterable[int]) -> None:
        """Spill least recently used clients (not in `keep`) until within the budget."""
        if self.budget is None or not self.resident:
            return
        if self.client_bytes is None:
            self.client_bytes = max(1, _nbytes(next(iter(self.resident.values())).snapshot()))
        capacity = int(self.budget // self.client_bytes)
        keep = set(keep)
        for cid in [c for c in self.resident if c not in keep]:
            if len(self.resident) <= capacity:
                break
            self._spill(cid)

    def _spill(self, cid: int) -> None:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="fslsage-clients-"))
        path = self._dir / f"client-{cid}.pt"
        torch.save(self.resident.pop(cid).snapshot(), path)
        self.spilled[cid] = path

    def snapshot(self, cid: int) -> dict[str, Any]:
        if cid in self.spilled:
            return torch.load(self.spilled[cid], map_location="cpu", weights_only=True)
        return self.resident[cid].snapshot()

    def restore(self, cid: int, snap: Mapping[str, Any]) -> None:
        if cid in self.spilled:
            torch.save(dict(snap), self.spilled[cid])
        else:
            self.resident[cid].restore(snap)

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __del__(self) -> None:
        self.close()
