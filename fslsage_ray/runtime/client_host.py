"""Hosts a group of virtual clients in one process (a Ray actor or the in-process backend).

Clients on a host run iteration by iteration (all clients' iteration 0, then 1, ...), the
order in which parallel clients would reach the server, so uploads arrive nearly sorted.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fslsage_ray.algorithms.base import Channel, Client, Parts, State, keeps_tensors
from fslsage_ray.algorithms.client_view import ClientView
from fslsage_ray.algorithms.evaluate import evaluate_batches
from fslsage_ray.algorithms.registry import get_algorithm
from fslsage_ray.algorithms.state_store import budget_bytes
from fslsage_ray.experiment import WorldSpec, build_template, initial_aux
from fslsage_ray.runtime.client_store import ClientStore
from fslsage_ray.seeding import generator
from fslsage_ray.tasks.base import Arrays, Payload, Sums


class TimedChannel:
    """A Channel that keeps count of the time spent inside it."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.keeps_tensors = keeps_tensors(channel)
        self.seconds = 0.0

    def upload(self, it: int, cid: int, payload: Payload) -> None:
        t0 = time.perf_counter()
        self.channel.upload(it, cid, payload)
        self.seconds += time.perf_counter() - t0

    def exchange(self, it: int, cid: int, payload: Payload) -> np.ndarray:
        t0 = time.perf_counter()
        grad = self.channel.exchange(it, cid, payload)
        self.seconds += time.perf_counter() - t0
        return grad

    def exchange_start(self, it: int, cid: int, payload: Payload) -> Any:
        t0 = time.perf_counter()
        handle = self.channel.exchange_start(it, cid, payload)
        self.seconds += time.perf_counter() - t0
        return handle

    def exchange_finish(self, handle: Any) -> np.ndarray:
        t0 = time.perf_counter()
        grad = self.channel.exchange_finish(handle)
        self.seconds += time.perf_counter() - t0
        return grad


@dataclass
class ClientResult:
    """What a client hands back at the end of a round."""

    cid: int
    parts: Parts
    num_samples: int
    loss_sum: float
    steps: int
    bytes: dict[str, int]
    busy_s: float = 0.0  # compute in this client's local steps this round (sending excluded)
    messages: list[tuple[int, str, int]] = field(default_factory=list)  # (step, kind, bytes)


class ClientHost:
    def __init__(
        self,
        world: WorldSpec,
        train: Arrays,
        assignment: Mapping[int, np.ndarray],
        device: torch.device,
    ) -> None:
        cfg = world.config
        algorithm = get_algorithm(cfg)
        template = build_template(world)
        self.task = world.task
        self.device = device
        self.views = {
            cid: ClientView(train, np.asarray(assignment[cid]), world.task)
            for cid in sorted(assignment)
        }

        def build(cid: int) -> Client:
            return algorithm.make_client(
                cid,
                self.views[cid],
                template,
                initial_aux(template, cfg.run.seed),
                generator(cfg.run.seed, "client", cid),
                device,
            )

        self.store = ClientStore(
            build, self.views, budget_bytes(cfg.runtime.client_state_budget_gb)
        )
        self.batch_size = cfg.algorithm.batch_size
        self.window = cfg.runtime.max_inflight_uploads  # exchanges in flight, pipelined
        self.active: list[int] = list(self.views)
        self.busy_s: dict[int, float] = dict.fromkeys(self.views, 0.0)

    def num_batches(self) -> dict[int, int]:
        return {cid: view.num_batches(self.batch_size) for cid, view in self.views.items()}

    def start_round(
        self, parts: Mapping[str, State], participants: Sequence[int] | None = None
    ) -> None:
        """Only this round's participants start; the others keep their state untouched."""
        self.active = [c for c in self.views if participants is None or c in participants]
        self.busy_s = dict.fromkeys(self.active, 0.0)
        for cid in self.active:
            self.store.get(cid).start_round(parts)
        self.store.release(keep=self.active)

    def run_local(
        self,
        start: int,
        stop: int | None,
        channel: Channel,
        only: Sequence[int] | None = None,
        hold_last: bool = False,
    ) -> None:
        chosen = [(c, self.store.get(c)) for c in self.active if only is None or c in only]
        if not chosen:
            return
        timed = TimedChannel(channel)
        last = max(client.num_batches for _, client in chosen)
        stop = last if stop is None else min(stop, last)
        pipelined = hasattr(channel, "exchange_start") and not hold_last
        for it in range(start, stop):
            stepping = [(cid, c) for cid, c in chosen if it < c.num_batches]
            if pipelined and all(hasattr(c, "start_step") for _, c in stepping):
                self._pipelined_steps(it, stepping, timed)
                continue
            for cid, client in stepping:
                with self._computing(cid, timed):
                    client.seed_step()
                    if hold_last and it == stop - 1:
                        client.step(it, timed, hold=True)
                    else:
                        client.step(it, timed)

    def _pipelined_steps(self, it: int, stepping: list[tuple[int, Client]], timed) -> None:
        """Iteration `it` of these clients with up to `window` exchanges in flight: each
        client's forward and send, then, oldest first, its answer and backward. Every client
        has its own model and the server takes each batch on its own, so the numbers are
        those of stepping the clients one at a time."""
        waiting: deque[tuple[int, Client, Any]] = deque()

        def finish_oldest() -> None:
            cid, client, pending = waiting.popleft()
            with self._computing(cid, timed):
                client.finish_step(pending, timed)

        for cid, client in stepping:
            with self._computing(cid, timed):
                client.seed_step()
                pending = client.start_step(it, timed)
            waiting.append((cid, client, pending))
            if len(waiting) >= self.window:
                finish_oldest()
        while waiting:
            finish_oldest()

    @contextmanager
    def _computing(self, cid: int, timed: TimedChannel) -> Iterator[None]:
        """Adds the client's compute time to its busy seconds: handing an upload over (or,
        in-process, the server's own step) is not the client's work."""
        t0, sending = time.perf_counter(), timed.seconds
        yield
        self.busy_s[cid] += time.perf_counter() - t0 - (timed.seconds - sending)

    def run_jobs(self, jobs: Sequence[Any]) -> list[Any]:
        """Server jobs for this host's clients, run on their own state (see jobs.py)."""
        return [self.store.get(job.cid).run_job(job) for job in jobs]

    def evaluate_batches(
        self, models: Sequence[torch.nn.Module], test: Arrays, ranges: Sequence[tuple[int, int]]
    ) -> list[Sums]:
        """A share of the test batches, with the server's (client model, eval head)."""
        client, head = (m.to(self.device) for m in models)
        return evaluate_batches(self.task, client, head, test, ranges, self.device)

    def accept_deliveries(self, deliveries: Mapping[int, Any]) -> None:
        for cid, delivery in deliveries.items():
            if cid in self.active:
                self.store.get(cid).accept_delivery(delivery)

    def snapshot(self) -> dict[int, dict[str, Any]]:
        """Clients that ever ran; one that never did is in its initial state, built again."""
        return {cid: self.store.snapshot(cid) for cid in self.store.built}

    def restore(self, snaps: Mapping[int, Mapping[str, Any]]) -> None:
        self.store.reset()
        for cid in self.store.cids:
            if cid in snaps:
                self.store.restore(cid, snaps[cid])

    def finish_round(self) -> list[ClientResult]:
        results = []
        for cid in self.active:
            c = self.store.get(cid)
            c.end_round()
            results.append(
                ClientResult(
                    cid,
                    c.parts(),
                    c.view.num_samples,
                    c.stats.loss_sum,
                    c.stats.steps,
                    dict(c.stats.bytes),
                    self.busy_s[cid],
                    list(c.stats.messages),
                )
            )
        self.store.release(keep=())
        return results
