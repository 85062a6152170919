"""Hosts a group of virtual clients in one process (a Ray actor or the in-process backend).

Clients on a host run iteration by iteration (all clients' iteration 0, then 1, ...), the
order in which parallel clients would reach the server, so uploads arrive nearly sorted.

With runtime.stream_participants (and a client_state_budget_gb), a round's participants do
not all stay in memory: a participant starts its round when first needed, and after each
of its steps, jobs and deliveries the store may spill it (keeping only clients with a step
still in flight), so a host's memory is bounded by the budget whatever the participation.
Every client computes on its own state only, so the numbers are those of the in-memory path.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fslsage_ray.algorithms.base import Client, Parts, State
from fslsage_ray.algorithms.client_view import ClientView
from fslsage_ray.algorithms.evaluate import evaluate_batches
from fslsage_ray.algorithms.registry import get_algorithm
from fslsage_ray.algorithms.state_store import budget_bytes
from fslsage_ray.experiment import WorldSpec, build_template, initial_aux
from fslsage_ray.runtime.channel import ServerChannel
from fslsage_ray.runtime.client_store import ClientStore
from fslsage_ray.runtime.handles import Handle
from fslsage_ray.seeding import generator
from fslsage_ray.tasks.base import Arrays, Sums


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
        server: Handle | None = None,
    ) -> None:
        """`server`: how its clients reach the server (None: the algorithm has none)."""
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
            build,
            self.views,
            budget_bytes(cfg.runtime.client_state_budget_gb),
            aside=self._round_state,
            bring_back=put_round_state,
        )
        self.stream = cfg.runtime.stream_participants
        self.parts: Mapping[str, State] = {}
        self.started: set[int] = set()  # participants whose round has started
        self.holding: set[int] = set()  # a held step: stays in memory (its autograd graph)
        self.batch_size = cfg.algorithm.batch_size
        self.channel = (
            None if server is None else ServerChannel(server, cfg.runtime.max_inflight_uploads)
        )
        self.active: list[int] = list(self.views)
        self.busy_s: dict[int, float] = dict.fromkeys(self.views, 0.0)

    def num_batches(self) -> dict[int, int]:
        return {cid: view.num_batches(self.batch_size) for cid, view in self.views.items()}

    def start_round(
        self, parts: Mapping[str, State], participants: Sequence[int] | None = None
    ) -> None:
        """Only this round's participants start; the others keep their state untouched.
        Streaming, each starts when first needed (its own state and generator only)."""
        chosen = None if participants is None else set(participants)
        self.active = [c for c in self.views if chosen is None or c in chosen]
        self.busy_s = dict.fromkeys(self.active, 0.0)
        self.parts, self.started, self.holding = parts, set(), set()
        self.store.reset_peak()
        if self.stream:
            return
        for cid in self.active:
            self._client(cid)
        self.store.release(keep=self.active)

    def _client(self, cid: int) -> Client:
        """A participant, loaded (and its round started if this is its first use)."""
        client = self.store.get(cid)
        if cid not in self.started:
            client.start_round(self.parts)
            self.started.add(cid)
        return client

    def _let_go(self, in_flight: Iterable[int] = ()) -> None:
        """Streaming: back within the budget, except clients with a step in flight."""
        if self.stream:
            self.store.release(keep=self.holding.union(in_flight))

    def _round_state(self, client: Client) -> dict[str, Any] | None:
        """What a participant spilled mid-round keeps in memory (None between rounds)."""
        if client.cid not in self.started:
            return None
        if client.cid in self.holding:
            raise RuntimeError(f"client {client.cid} has a held step and cannot be spilled")
        return round_state(client)

    def run_local(
        self,
        start: int,
        stop: int | None,
        only: Sequence[int] | None = None,
        hold_last: bool = False,
    ) -> None:
        """Local iterations [start, stop) of this round's clients (or `only` these); with
        `hold_last`, the last one waits for the client's next call (see LocalPhase). Returns
        once the server has taken every upload sent."""
        chosen = [c for c in self.active if only is None or c in only]
        if not chosen:
            return
        batches = {cid: self.views[cid].num_batches(self.batch_size) for cid in chosen}
        last = max(batches.values())
        stop = last if stop is None else min(stop, last)
        pipelined = (
            start < stop and not hold_last and hasattr(self._client(chosen[0]), "start_step")
        )
        for it in range(start, stop):
            stepping = [cid for cid in chosen if it < batches[cid]]
            if pipelined:
                self._pipelined_steps(it, stepping)
                continue
            for cid in stepping:
                client = self._client(cid)
                self.holding.discard(cid)  # its held step is taken now
                with self._computing(cid):
                    client.seed_step()
                    if hold_last and it == stop - 1:
                        client.step(it, self.channel, hold=True)
                        self.holding.add(cid)
                    else:
                        client.step(it, self.channel)
                self._let_go()
        if self.channel is not None:
            self.channel.drain()

    def _pipelined_steps(self, it: int, stepping: list[int]) -> None:
        """Iteration `it` of these clients with up to the channel's `window` exchanges in
        flight: each client's forward and send, then, oldest first, its answer and
        backward. Every client has its own model and the server takes each batch on its
        own, so the numbers are those of stepping the clients one at a time (a window of
        one, in one process, is exactly that)."""
        waiting: deque[tuple[int, Client, Any]] = deque()

        def finish_oldest() -> None:
            cid, client, pending = waiting.popleft()
            with self._computing(cid):
                client.finish_step(pending, self.channel)
            self._let_go(c for c, _, _ in waiting)

        for cid in stepping:
            client = self._client(cid)
            with self._computing(cid):
                client.seed_step()
                pending = client.start_step(it, self.channel)
            waiting.append((cid, client, pending))
            if len(waiting) >= self.channel.window:
                finish_oldest()
        while waiting:
            finish_oldest()

    @contextmanager
    def _computing(self, cid: int) -> Iterator[None]:
        """Adds the client's compute time to its busy seconds: handing an upload over (or,
        in-process, the server's own step) is not the client's work."""
        sending = self.channel.seconds if self.channel is not None else 0.0
        t0 = time.perf_counter()
        yield
        spent = (self.channel.seconds if self.channel is not None else 0.0) - sending
        self.busy_s[cid] += time.perf_counter() - t0 - spent

    def device_name(self) -> str:
        return str(self.device)

    def run_jobs(self, jobs: Mapping[int, Any]) -> list[Any]:
        """Server jobs for this host's clients ({cid: job}), run on their own state (see
        jobs.py)."""
        outcomes = []
        for job in jobs.values():
            outcomes.append(self._client(job.cid).run_job(job))
            self._let_go()
        return outcomes

    def evaluate_batches(
        self, models: Sequence[torch.nn.Module], test: Arrays, ranges: Sequence[tuple[int, int]]
    ) -> list[Sums]:
        """A share of the test batches, with the server's (client model, eval head)."""
        client, head = (m.to(self.device) for m in models)
        return evaluate_batches(self.task, client, head, test, ranges, self.device)

    def accept_deliveries(self, deliveries: Mapping[int, Any]) -> None:
        active = set(self.active)
        for cid, delivery in deliveries.items():
            if cid in active:
                self._client(cid).accept_delivery(delivery)
                self._let_go()

    # --- state, a chunk of clients at a time (backend.save_state/load_state) -------------
    def state_ids(self) -> list[int]:
        """Clients that ever ran; one that never did is in its initial state, built again."""
        return self.store.built

    def snapshot_entries(self, cids: Sequence[int]) -> dict[int, dict[str, Any]]:
        return {cid: self.store.snapshot(cid) for cid in cids}

    def reset_states(self) -> None:
        """Every client back to its initial state, before `restore_entries`."""
        self.store.reset()

    def restore_entries(self, snaps: Mapping[int, Mapping[str, Any]]) -> None:
        for cid, snap in snaps.items():
            self.store.restore(cid, snap)
            self.store.release(keep=())  # restoring many: idle ones go to disk as they come

    def close_stores(self) -> None:
        """Delete the spill folder now: an actor ended by ray.kill runs no finalizer, and a
        10,000-client run leaves gigabytes there."""
        self.store.close()

    def restore(self, snaps: Mapping[int, Mapping[str, Any]]) -> None:
        """All at once (a checkpoint of format 2, which kept every state inline)."""
        self.reset_states()
        self.restore_entries({cid: snaps[cid] for cid in self.store.cids if cid in snaps})

    def finish_round(self) -> list[ClientResult]:
        results = []
        for cid in self.active:
            c = self._client(cid)
            c.end_round()
            self.holding.discard(cid)
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
            self._let_go()
        self.started = set()
        self.store.drop_aside()
        self.store.release(keep=())
        return results


ROUND_MODULES = ("model", "aux")  # a client's modules whose train/eval mode a round sets


def round_state(client: Client) -> dict[str, Any]:
    """A started client's round-only state, outside its snapshot: batch order, round
    statistics, and its modules' train/eval modes (a rebuilt module starts in train mode)."""
    modes = {
        name: module.training
        for name in ROUND_MODULES
        if isinstance(module := getattr(client, name, None), torch.nn.Module)
    }
    return {"batches": client._batches, "stats": client.stats, "modes": modes}


def put_round_state(client: Client, kept: Mapping[str, Any]) -> None:
    client._batches, client.stats = kept["batches"], kept["stats"]
    for name, training in kept["modes"].items():
        getattr(client, name).train(training)
