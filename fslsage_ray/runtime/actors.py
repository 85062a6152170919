"""The Ray actors: thin shells around ClientHost and ServerHost.

Smashed activations go from a client actor straight to the server actor as object refs
(ray.put once, the ref passed); the client does not wait for the server, except to bound
the uploads in flight (back-pressure) and, at the end of a phase, to surface server errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

import numpy as np
import ray
import torch

from fslsage_ray.experiment import WorldSpec
from fslsage_ray.runtime.allocator import pin_malloc_thresholds
from fslsage_ray.runtime.client_host import ClientHost, ClientResult
from fslsage_ray.runtime.device import choose_device
from fslsage_ray.runtime.server_host import ServerHost, UploadOrderError


def _prepare_process(world: WorldSpec) -> None:
    torch.set_num_threads(world.config.runtime.torch_threads)
    if world.config.runtime.pin_malloc:
        pin_malloc_thresholds()


def _device(world: WorldSpec) -> torch.device:
    return choose_device(world.config.runtime.device, gpu_assigned=bool(ray.get_gpu_ids()))


@ray.remote
class ClientActor:
    def __init__(
        self,
        world: WorldSpec,
        images: np.ndarray,
        labels: np.ndarray,
        assignment: dict[int, np.ndarray],
        server: ray.actor.ActorHandle,
    ) -> None:
        _prepare_process(world)
        self.host = ClientHost(world, images, labels, assignment, _device(world))
        self.server = server
        self.max_inflight = world.config.runtime.max_inflight_uploads
        self.inflight: list[ray.ObjectRef] = []

    def num_batches(self) -> dict[int, int]:
        return self.host.num_batches()

    def device(self) -> str:
        return str(self.host.device)

    def start_round(
        self, parts: Mapping[str, Mapping[str, torch.Tensor]], participants: list[int] | None = None
    ) -> None:
        self.host.start_round(parts, participants)

    def upload(self, it: int, cid: int, smashed: np.ndarray, labels: np.ndarray) -> None:
        """Channel.upload: the ref goes to the server; the client goes on training."""
        self.inflight.append(self.server.submit.remote(it, cid, ray.put(smashed), labels))
        if len(self.inflight) > self.max_inflight:
            extra = len(self.inflight) - self.max_inflight
            done, self.inflight = ray.wait(self.inflight, num_returns=extra)
            ray.get(done)  # raises here if the server failed on an upload

    def exchange(self, it: int, cid: int, smashed: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Channel.exchange: wait for dL/dz (SplitFed)."""
        return ray.get(self.server.submit.remote(it, cid, ray.put(smashed), labels))

    def run_local(self, start: int, stop: int | None, only: list[int] | None = None) -> None:
        self.host.run_local(start, stop, self, only)
        ray.get(self.inflight)
        self.inflight = []

    def load_aux(self, states: Mapping[int, Mapping[str, torch.Tensor]]) -> None:
        self.host.load_aux(states)

    def finish_round(self) -> list[ClientResult]:
        return self.host.finish_round()

    def fit_alignment(self, job_refs: list[ray.ObjectRef]) -> list:
        """Fit the AMs of this actor's clients for the server (jobs arrive as refs)."""
        return self.host.fit_alignment(ray.get(job_refs))

    def snapshot(self) -> dict:
        return self.host.snapshot()

    def restore(self, snaps: dict) -> None:
        self.host.restore(snaps)


@ray.remote
class ServerActor:
    """Async: uploads are accepted while the server works through them in order."""

    def __init__(
        self,
        world: WorldSpec,
        test_images: np.ndarray,
        test_labels: np.ndarray,
        client_sizes: dict[int, int],
    ) -> None:
        _prepare_process(world)
        self.host = ServerHost(world, test_images, test_labels, client_sizes, _device(world))
        self._changed: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    async def ready(self) -> bool:
        return True

    async def device(self) -> str:
        return str(self.host.device)

    async def begin_round(self, expected: Sequence[tuple[int, int]] | None) -> None:
        self.host.begin_round(expected)

    async def submit(self, it: int, cid: int, smashed: np.ndarray, labels: np.ndarray):
        grad = self.host.submit(it, cid, smashed, labels)
        self._event().set()
        return grad

    async def wait_processed(self, it_limit: int | None, timeout_s: float) -> None:
        """Return once every expected upload before it_limit is applied, or fail loudly."""
        deadline = time.monotonic() + timeout_s
        event = self._event()
        while not self.host.processed_before(it_limit):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = self.host.missing_before(it_limit)
                raise UploadOrderError(f"uploads did not arrive within {timeout_s}s: {missing[:5]}")
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), timeout=min(remaining, 1.0))
            except asyncio.TimeoutError:
                pass

    async def align_all(self, participants: list[int] | None = None):
        return self.host.align_all(participants)

    async def prepare_alignment(self, participants: list[int] | None) -> dict:
        """{cid: ref to its job}: the buffers go to the object store, not via the driver."""
        return {job.cid: ray.put(job) for job in self.host.prepare_alignment(participants)}

    async def complete_alignment(self, *outcome_lists: list) -> dict:
        return self.host.complete_alignment([o for part in outcome_lists for o in part])

    async def take_busy(self) -> float:
        return self.host.take_busy()

    async def evaluate(self, client_state: Mapping[str, torch.Tensor]) -> tuple[float, float]:
        return self.host.evaluate(client_state)

    async def end_round(self) -> tuple[float, int]:
        return self.host.end_round()

    async def snapshot(self) -> dict:
        return self.host.snapshot()

    async def restore(self, snap: dict) -> None:
        self.host.restore(snap)
