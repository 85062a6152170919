"""The Ray actors: thin shells around ClientHost and ServerHost.

Smashed activations go from a client actor straight to the server actor as object refs
(ray.put once, the ref passed), a few clients' uploads per call and per object rather than
one each; the client does not wait for the server, except to bound the uploads in flight
(back-pressure) and, at the end of a phase, to surface server errors. SplitFed batches,
which wait for dL/dz, go the same way: several clients' batches in one call, whose answer
holds each one's dL/dz.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

import numpy as np
import ray
import torch

from fslsage_ray.experiment import WorldSpec
from fslsage_ray.registry import load_plugins
from fslsage_ray.runtime import tensor_wire
from fslsage_ray.runtime.allocator import prepare_process
from fslsage_ray.runtime.client_host import ClientHost, ClientResult
from fslsage_ray.runtime.device import choose_device
from fslsage_ray.runtime.server_host import ServerHost, UploadOrderError
from fslsage_ray.tasks.base import Arrays, Payload


def _prepare_process(world: WorldSpec) -> None:
    load_plugins(world.config.plugins)  # the user's registered names, in this process too
    prepare_process(world.config.runtime)
    tensor_wire.register()  # what this actor sends: tensors as raw bytes


def _device(world: WorldSpec) -> torch.device:
    return choose_device(world.config.runtime.device, gpu_assigned=bool(ray.get_gpu_ids()))


@ray.remote
class ClientActor:
    def __init__(
        self,
        world: WorldSpec,
        train: Arrays,
        assignment: dict[int, np.ndarray],
        server: ray.actor.ActorHandle,
    ) -> None:
        _prepare_process(world)
        self.host = ClientHost(world, train, assignment, _device(world))
        self.server = server
        self.max_inflight = world.config.runtime.max_inflight_uploads
        self.batch = max(1, self.max_inflight // 2)  # uploads per call to the server
        self.pending: list[tuple[int, int, Payload]] = []  # gathered, not yet sent
        self.inflight: list[tuple[ray.ObjectRef, int]] = []  # (call, uploads in it)
        self.exchanges: list[tuple[int, int, Payload]] = []  # SplitFed batches, not yet sent
        self.sent_batches = 0  # queues of exchanges sent so far
        self.answers: dict[int, list] = {}  # queue number -> [call, grads, answers left]

    def num_batches(self) -> dict[int, int]:
        return self.host.num_batches()

    def device(self) -> str:
        return str(self.host.device)

    def start_round(
        self, parts: Mapping[str, Mapping[str, torch.Tensor]], participants: list[int] | None = None
    ) -> None:
        self.host.start_round(parts, participants)

    def upload(self, it: int, cid: int, payload: Payload) -> None:
        """Channel.upload: gathered and sent `batch` at a time (one call and one object for
        several clients' uploads, not one per client); the client goes on training. The server
        applies them in its fixed order whatever calls they came in, so results do not change."""
        self.pending.append((it, cid, payload))
        if len(self.pending) >= self.batch:
            self._send()

    def _send(self) -> None:
        """The gathered uploads to the server as one ref; then back-pressure: wait while more
        than max_inflight uploads are sent and not yet applied."""
        if not self.pending:
            return
        self.inflight.append(
            (self.server.submit_many.remote(ray.put(self.pending)), len(self.pending))
        )
        self.pending = []
        while sum(n for _, n in self.inflight) > self.max_inflight:
            (done,), _ = ray.wait([ref for ref, _ in self.inflight], num_returns=1)
            ray.get(done)  # raises here if the server failed on an upload
            self.inflight = [(ref, n) for ref, n in self.inflight if ref != done]

    def exchange(self, it: int, cid: int, payload: Payload) -> np.ndarray:
        """Channel.exchange: wait for dL/dz (SplitFed)."""
        return self.exchange_finish(self.exchange_start(it, cid, payload))

    def exchange_start(self, it: int, cid: int, payload: Payload) -> tuple[int, int]:
        """Queue a SplitFed batch; the queue goes to the server, as one call and one object,
        when the first of its answers is asked for."""
        self.exchanges.append((it, cid, payload))
        return self.sent_batches, len(self.exchanges) - 1

    def exchange_finish(self, handle: tuple[int, int]) -> np.ndarray:
        number, index = handle
        if number == self.sent_batches:  # still queued: send the queue (uploads first)
            self._send()
            call = self.server.submit_exchanges.remote(ray.put(self.exchanges))
            self.answers[number] = [call, None, len(self.exchanges)]
            self.exchanges, self.sent_batches = [], self.sent_batches + 1
        entry = self.answers[number]
        if entry[1] is None:
            entry[1] = ray.get(entry[0])
        entry[2] -= 1
        if entry[2] == 0:
            del self.answers[number]
        return entry[1][index]

    def run_local(
        self, start: int, stop: int | None, only: list[int] | None = None, hold_last: bool = False
    ) -> None:
        self.host.run_local(start, stop, self, only, hold_last)
        self._send()
        ray.get([ref for ref, _ in self.inflight])
        self.inflight = []

    def accept_deliveries(self, delivery_refs: Mapping[int, ray.ObjectRef]) -> None:
        """Server-job results for this actor's clients, fetched from the object store."""
        cids = list(delivery_refs)
        states = ray.get([delivery_refs[c] for c in cids])
        self.host.accept_deliveries(dict(zip(cids, states, strict=True)))

    def finish_round(self) -> list[ClientResult]:
        return self.host.finish_round()

    def run_jobs(self, job_refs: list[ray.ObjectRef]) -> list:
        """Server jobs for this actor's clients (they arrive as refs; see jobs.py)."""
        return self.host.run_jobs(ray.get(job_refs))

    def evaluate_batches(self, models: tuple, test: Arrays, ranges: list[tuple[int, int]]) -> list:
        return self.host.evaluate_batches(models, test, ranges)

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
        test: Arrays,
        client_sizes: dict[int, int],
    ) -> None:
        _prepare_process(world)
        self.host = ServerHost(world, test, client_sizes, _device(world))
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

    async def submit(self, it: int, cid: int, payload: Payload):
        grad = self.host.submit(it, cid, payload)
        self._event().set()
        return grad

    async def submit_exchanges(self, uploads: list[tuple[int, int, Payload]]) -> list:
        """Several SplitFed batches of one client actor in one call; their dL/dz in order."""
        grads = [self.host.submit(it, cid, payload) for it, cid, payload in uploads]
        self._event().set()
        return grads

    async def submit_many(self, uploads: list[tuple[int, int, Payload]]) -> None:
        """Several uploads of one client actor, in one call (each taken as `submit` would)."""
        for it, cid, payload in uploads:
            self.host.submit(it, cid, payload)
        self._event().set()

    async def wait_processed(
        self, it_limit: int | None, timeout_s: float, clients: list[int] | None = None
    ) -> None:
        """Return once every expected upload before it_limit (of `clients`) is applied, or
        fail loudly."""
        deadline = time.monotonic() + timeout_s
        event = self._event()
        while not self.host.processed_before(it_limit, clients):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = self.host.missing_before(it_limit, clients)
                raise UploadOrderError(f"uploads did not arrive within {timeout_s}s: {missing[:5]}")
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), timeout=min(remaining, 1.0))
            except asyncio.TimeoutError:
                pass

    async def run_jobs(self, participants: list[int]) -> tuple[dict, dict]:
        """Every server job run here; the deliveries stay in the object store (as refs), so
        model states do not pass through the driver."""
        reports, deliveries = self.host.run_jobs(participants)
        return reports, {cid: ray.put(d) for cid, d in deliveries.items()}

    async def run_given_jobs(self, job_refs: list[ray.ObjectRef]) -> list:
        """A share of the jobs prepared here, run here while the client actors run theirs."""
        return self.host.run_given_jobs(await asyncio.gather(*job_refs))

    async def prepare_jobs(self, participants: list[int]) -> dict:
        """{cid: ref to its job}: the buffers go to the object store, not via the driver."""
        return {job.cid: ray.put(job) for job in self.host.prepare_jobs(participants)}

    async def complete_jobs(self, *outcome_lists: list) -> tuple[dict, dict]:
        reports, deliveries = self.host.complete_jobs([o for part in outcome_lists for o in part])
        return reports, {cid: ray.put(d) for cid, d in deliveries.items()}

    async def take_busy(self) -> float:
        return self.host.take_busy()

    async def evaluate(self, client_state: Mapping[str, torch.Tensor]) -> dict[str, float]:
        return self.host.evaluate(client_state)

    async def eval_models(self, client_state: Mapping[str, torch.Tensor]) -> list[ray.ObjectRef]:
        """A ref to (client model, eval head) for workers sharing the evaluation."""
        return [ray.put(self.host.eval_models(client_state))]

    async def evaluate_batches(self, ranges: list[tuple[int, int]]) -> list:
        return self.host.evaluate_batches(ranges)

    async def end_round(self) -> tuple[float, int]:
        return self.host.end_round()

    async def snapshot(self) -> dict:
        return self.host.snapshot()

    async def restore(self, snap: dict) -> None:
        self.host.restore(snap)
