"""The same rounds without Ray: for debugging, tests, and as the reference for Ray's cost.

One client host holds every client, next to the server; both are reached through local
handles, so the round protocol (backend.py) and the channel (channel.py) are those of Ray.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fslsage_ray.experiment import WorldSpec
from fslsage_ray.runtime.allocator import prepare_process
from fslsage_ray.runtime.backend import Backend
from fslsage_ray.runtime.client_host import ClientHost
from fslsage_ray.runtime.handles import LocalHandle
from fslsage_ray.runtime.server_host import ServerHost


class InProcessBackend(Backend):
    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)

    def start(self, world: WorldSpec, train, test, parts: Sequence[np.ndarray]) -> None:
        prepare_process(world.config.runtime)
        assignment = {cid: idx for cid, idx in enumerate(parts)}
        sizes = {cid: len(idx) for cid, idx in assignment.items()}
        self.world, self.test, self.test_rows = world, test, world.task.num_samples(test)
        self.server = LocalHandle(ServerHost(world, test, sizes, self.device))
        host = ClientHost(world, train, assignment, self.device, self.server)
        self.clients, self.groups = [LocalHandle(host)], [sorted(assignment)]

    def describe(self) -> str:
        return f"in-process (no Ray), on {self.device}"
