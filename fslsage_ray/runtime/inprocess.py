"""The same rounds without Ray: for debugging, tests, and as the reference for Ray's cost."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fslsage_ray.algorithms.base import State
from fslsage_ray.algorithms.jobs import JobReport
from fslsage_ray.experiment import WorldSpec
from fslsage_ray.runtime.allocator import prepare_process
from fslsage_ray.runtime.backend import Backend, ServerStats
from fslsage_ray.runtime.client_host import ClientHost, ClientResult
from fslsage_ray.runtime.server_host import ServerHost, UploadOrderError
from fslsage_ray.tasks.base import Payload


class DirectChannel:
    """Hands uploads straight to the server object in the same process, as the client's
    tensors (on its device: no copy to the host and back)."""

    keeps_tensors = True

    def __init__(self, server: ServerHost) -> None:
        self.server = server

    def upload(self, it: int, cid: int, payload: Payload) -> None:
        self.server.submit(it, cid, payload)

    def exchange(self, it: int, cid: int, payload: Payload) -> torch.Tensor:
        return self.server.submit(it, cid, payload)


class InProcessBackend(Backend):
    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.host: ClientHost | None = None
        self.server: ServerHost | None = None

    def start(self, world: WorldSpec, train, test, parts: Sequence[np.ndarray]) -> None:
        prepare_process(world.config.runtime)
        assignment = {cid: idx for cid, idx in enumerate(parts)}
        sizes = {cid: len(idx) for cid, idx in assignment.items()}
        self.host = ClientHost(world, train, assignment, self.device)
        self.server = ServerHost(world, test, sizes, self.device)
        self.channel = DirectChannel(self.server)

    def num_batches(self) -> dict[int, int]:
        return self.host.num_batches()

    def start_round(self, parts: Mapping[str, State], expected, participants) -> None:
        self.participants = list(participants)
        self.server.begin_round(expected)
        self.host.start_round(parts, self.participants)

    def run_local(
        self,
        start: int,
        stop: int | None,
        only: Sequence[int] | None = None,
        hold_last: bool = False,
    ) -> None:
        self.host.run_local(start, stop, self.channel, only, hold_last)

    def _check_drained(self, it_limit: int | None, only: Sequence[int] | None = None) -> None:
        missing = self.server.missing_before(it_limit, only)
        if missing:
            raise UploadOrderError(f"uploads never arrived: {missing[:5]}")

    def run_server_jobs(
        self, it_limit: int, only: Sequence[int] | None = None
    ) -> dict[int, JobReport]:
        self._check_drained(it_limit, only)
        reports, deliveries = self.server.run_jobs(self.participants if only is None else only)
        self.host.accept_deliveries(deliveries)
        return reports

    def finish_round(self) -> tuple[list[ClientResult], ServerStats]:
        self._check_drained(None)
        loss, uploads = self.server.end_round()
        return self.host.finish_round(), ServerStats(loss, uploads, self.server.take_busy())

    def evaluate(self, client_state: Mapping[str, torch.Tensor]) -> dict[str, float]:
        return self.server.evaluate(client_state)

    def snapshot(self) -> dict[str, Any]:
        return {"clients": self.host.snapshot(), "server": self.server.snapshot()}

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.host.restore(snap["clients"])
        self.server.restore(snap["server"])

    def describe(self) -> str:
        return f"in-process (no Ray), on {self.device}"
