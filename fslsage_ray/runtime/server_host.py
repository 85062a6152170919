"""The server side in one process: upload processing, alignment, evaluation.

For algorithms whose uploads get no reply (FSL-SAGE, CSE-FSL, FSL-AN), uploads are applied
in the fixed order the algorithm gives, whatever order they arrive in (Ray does not keep
an async actor's calls in submission order), so the server is the same for any number of
actors: an upload that arrives early waits in `pending` until every upload before it is
applied. SplitFed clients wait for each reply, so their uploads are applied on arrival.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from fslsage_ray.algorithms.base import load_transfer_state
from fslsage_ray.algorithms.evaluate import evaluate_batches, evaluate_split
from fslsage_ray.algorithms.jobs import JobReport
from fslsage_ray.algorithms.registry import get_algorithm
from fslsage_ray.experiment import WorldSpec, build_template, initial_aux
from fslsage_ray.tasks.base import Arrays, Payload, Sums

Key = tuple[int, int]  # (iteration, client id)
Deliveries = dict[int, Any]  # client id -> what a server job sends down to it


class UploadOrderError(RuntimeError):
    """An upload the server was not told to expect (a protocol bug, never bad user input)."""


class FreshModules(Mapping[int, nn.Module]):
    """Each client's initial AM, built when asked for (a new module every time), so that
    thousands of clients do not cost thousands of modules before any of them is used."""

    def __init__(self, cids: Sequence[int], make: Callable[[], nn.Module]) -> None:
        self.cids, self.make = list(cids), make
        self._known = set(self.cids)

    def __getitem__(self, cid: int) -> nn.Module:
        if cid not in self._known:
            raise KeyError(cid)
        return self.make()

    def __iter__(self) -> Iterator[int]:
        return iter(self.cids)

    def __len__(self) -> int:
        return len(self.cids)


class ServerHost:
    def __init__(
        self,
        world: WorldSpec,
        test: Arrays,
        client_sizes: Mapping[int, int],
        device: torch.device,
    ) -> None:
        cfg = world.config
        algorithm = get_algorithm(cfg)
        template = build_template(world)
        cids = list(client_sizes) if algorithm.server_holds_aux else []
        own_aux = FreshModules(cids, lambda: initial_aux(template, cfg.run.seed))
        self.server = algorithm.make_server(template, own_aux, dict(client_sizes), device)
        self.eval_client = copy.deepcopy(algorithm.client_module(template)).to(device)
        self.world = world
        self.device = device
        self.test = test
        self.ordered = algorithm.ordered_uploads and cfg.runtime.upload_order == "deterministic"
        self._expected: list[Key] | None = None
        self._next = 0
        self._pending: dict[Key, Payload] = {}
        self._done: set[Key] = set()
        self.busy_s = 0.0

    def begin_round(self, expected: Sequence[Key] | None) -> None:
        if self._pending:
            raise UploadOrderError(f"{len(self._pending)} uploads left over from last round")
        self._expected = list(expected) if expected is not None else None  # in apply order
        self._next = 0
        self._done = set()

    def submit(self, it: int, cid: int, payload: Payload):
        """Take one upload; returns dL/dz for algorithms that send it back."""
        t0 = time.perf_counter()
        try:
            return self._submit(it, cid, payload)
        finally:
            self.busy_s += time.perf_counter() - t0

    def _submit(self, it: int, cid: int, payload: Payload):
        key = (it, cid)
        if not self.ordered:
            self._done.add(key)
            return self.server.process_upload(cid, payload)
        if key in self._pending or key in self._done:
            raise UploadOrderError(f"upload {key} received twice")
        self._pending[key] = payload
        expected = self._expected or []
        while self._next < len(expected) and expected[self._next] in self._pending:
            ready = expected[self._next]
            self.server.process_upload(ready[1], self._pending.pop(ready))
            self._done.add(ready)
            self._next += 1
        return None

    def missing_before(
        self, it_limit: int | None, clients: Sequence[int] | None = None
    ) -> list[Key]:
        """Expected uploads with iteration < it_limit (None: all), of `clients` (None: all),
        not yet applied."""
        if not self.ordered or self._expected is None:
            return []
        return [
            k
            for k in self._expected
            if (it_limit is None or k[0] < it_limit)
            and (clients is None or k[1] in clients)
            and k not in self._done
        ]

    def processed_before(self, it_limit: int | None, clients: Sequence[int] | None = None) -> bool:
        return not self.missing_before(it_limit, clients)

    def prepare_jobs(self, participants: Sequence[int]) -> list[Any]:
        """This round's server jobs, to be run elsewhere (in client order)."""
        t0 = time.perf_counter()
        jobs = self.server.prepare_jobs(sorted(participants))
        self.busy_s += time.perf_counter() - t0
        return jobs

    def complete_jobs(self, outcomes: Sequence[Any]) -> tuple[dict[int, JobReport], Deliveries]:
        """Adopt outcomes (in client order); reports, and what must go down to clients."""
        reports, deliveries = {}, {}
        # A job may give several outcomes (a group of clients fitted together).
        flat = [o for x in outcomes for o in (x if isinstance(x, list) else [x])]
        for outcome in sorted(flat, key=lambda o: o.cid):
            report, delivery = self.server.complete_job(outcome)
            reports[report.cid] = report
            if delivery is not None:
                deliveries[report.cid] = delivery
        return reports, deliveries

    def run_given_jobs(self, jobs: Sequence[Any]) -> list[Any]:
        """Run these jobs here, one after another; their outcomes, to complete."""
        t0 = time.perf_counter()
        outcomes = [self.server.run_job(job) for job in jobs]
        self.busy_s += time.perf_counter() - t0
        return outcomes

    def run_jobs(self, participants: Sequence[int]) -> tuple[dict[int, JobReport], Deliveries]:
        """Prepare, run and complete every job here, one after another."""
        return self.complete_jobs(self.run_given_jobs(self.prepare_jobs(participants)))

    def take_busy(self) -> float:
        """Seconds the server computed since the last call (uploads and alignment)."""
        busy, self.busy_s = self.busy_s, 0.0
        return busy

    def end_round(self) -> tuple[float, int]:
        """Round-end server work; returns (mean server loss, uploads) of the round."""
        self.server.end_round()
        return self.server.take_round_stats()

    def snapshot(self) -> dict[str, Any]:
        if self._pending:
            raise UploadOrderError("cannot snapshot the server with uploads still pending")
        return self.server.snapshot()

    def restore(self, snap: Mapping[str, Any]) -> None:
        self._pending.clear()
        self.server.restore(snap)

    def eval_models(self, client_state: Mapping[str, torch.Tensor]) -> tuple[nn.Module, ...]:
        """(client model with this state, the server's eval head), on the CPU, for workers
        that evaluate a share of the test batches."""
        load_transfer_state(self.eval_client, client_state)
        models = (self.eval_client, self.server.eval_head())
        if self.device.type == "cpu":
            return models
        return tuple(copy.deepcopy(m).cpu() for m in models)

    def evaluate_batches(self, ranges: Sequence[tuple[int, int]]) -> list[Sums]:
        """This process's share of the test batches, with the models of `eval_models`."""
        return evaluate_batches(
            self.world.task,
            self.eval_client,
            self.server.eval_head(),
            self.test,
            ranges,
            self.device,
        )

    def evaluate(self, client_state: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """The task's test metrics of this client model followed by the server's."""
        load_transfer_state(self.eval_client, client_state)
        return evaluate_split(
            self.world.task,
            self.eval_client,
            self.server.eval_head(),
            self.test,
            self.world.config.run.eval_batch_size,
            self.device,
        )
