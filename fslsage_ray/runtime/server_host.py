"""The server side in one process: upload processing, alignment, evaluation.

For algorithms whose uploads get no reply (FSL-SAGE, CSE-FSL, FSL-AN), uploads are applied
in the fixed order the algorithm gives, whatever order they arrive in (Ray does not keep
an async actor's calls in submission order), so the server is the same for any number of
actors: an upload that arrives early waits in `pending` until every upload before it is
applied. SplitFed clients wait for each reply, so their uploads are applied on arrival.

Its public methods are the server's verbs: the round protocol (backend.py) and the clients'
channel (channel.py) call them by name through a handle (handles.py), in this process or in
the server actor alike.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fslsage_ray.algorithms.base import load_transfer_state
from fslsage_ray.algorithms.evaluate import evaluate_batches, evaluate_split
from fslsage_ray.algorithms.jobs import JobReport
from fslsage_ray.algorithms.registry import get_algorithm
from fslsage_ray.experiment import WorldSpec, build_template, initial_aux
from fslsage_ray.models.frozen import copy_sharing_frozen
from fslsage_ray.runtime.handles import Parcel
from fslsage_ray.tasks.base import Arrays, Payload, PayloadArray, Sums

Key = tuple[int, int]  # (iteration, client id)
Upload = tuple[int, int, Payload]  # (iteration, client id, payload)
Deliveries = dict[int, Parcel]  # client id -> what a server job sends down to it


@dataclass(frozen=True)
class ServerStats:
    mean_loss: float  # server loss on this round's uploads (NaN without uploads)
    uploads: int
    busy_s: float  # time the server spent computing this round (uploads, alignment)


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
        self.eval_client = copy_sharing_frozen(algorithm.client_module(template)).to(device)
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

    def take_uploads(self, uploads: Sequence[Upload]) -> None:
        """Take uploads (one client host's, in one call); apply every one whose turn has
        come. An upload that arrives early waits in `pending` until every upload before it
        is applied."""
        t0 = time.perf_counter()
        try:
            for it, cid, payload in uploads:
                key = (it, cid)
                if not self.ordered:
                    self._done.add(key)
                    self.server.process_upload(cid, payload)
                    continue
                if key in self._pending or key in self._done:
                    raise UploadOrderError(f"upload {key} received twice")
                self._pending[key] = payload
                expected = self._expected or []
                while self._next < len(expected) and expected[self._next] in self._pending:
                    ready = expected[self._next]
                    self.server.process_upload(ready[1], self._pending.pop(ready))
                    self._done.add(ready)
                    self._next += 1
        finally:
            self.busy_s += time.perf_counter() - t0

    def take_exchanges(self, uploads: Sequence[Upload]) -> list[PayloadArray]:
        """SplitFed batches (one client host's, in one call), applied on arrival; dL/dz of
        each, in order."""
        t0 = time.perf_counter()
        try:
            answers = []
            for it, cid, payload in uploads:
                self._done.add((it, cid))
                answers.append(self.server.process_upload(cid, payload))
            return answers
        finally:
            self.busy_s += time.perf_counter() - t0

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

    def wait_processed(self, it_limit: int | None, clients: Sequence[int] | None = None) -> None:
        """Every expected upload before it_limit (of `clients`) is applied, or fail loudly.
        In one process every upload handed over is already applied, so nothing can be
        waited for; a server actor waits for uploads still on their way (actors.py)."""
        missing = self.missing_before(it_limit, clients)
        if missing:
            raise UploadOrderError(f"uploads never arrived: {missing[:5]}")

    def _prepare(self, participants: Sequence[int]) -> list[Any]:
        t0 = time.perf_counter()
        jobs = self.server.prepare_jobs(sorted(participants))
        self.busy_s += time.perf_counter() - t0
        return jobs

    def prepare_jobs(self, participants: Sequence[int]) -> dict[int, Parcel]:
        """This round's server jobs, to be run elsewhere: {cid: job}, in client order."""
        return {job.cid: Parcel(job) for job in self._prepare(participants)}

    def run_given_jobs(self, jobs: Mapping[int, Any]) -> list[Any]:
        """Run these jobs here, one after another; their outcomes, to complete."""
        t0 = time.perf_counter()
        outcomes = [self.server.run_job(job) for job in jobs.values()]
        self.busy_s += time.perf_counter() - t0
        return outcomes

    def complete_jobs(self, *outcomes: Sequence[Any]) -> tuple[dict[int, JobReport], Deliveries]:
        """Adopt outcomes (several hosts' lists, taken in client order); the reports, and
        what must go down to clients."""
        reports, deliveries = {}, {}
        # A job may give several outcomes (a group of clients fitted together).
        flat = [o for part in outcomes for x in part for o in (x if isinstance(x, list) else [x])]
        for outcome in sorted(flat, key=lambda o: o.cid):
            report, delivery = self.server.complete_job(outcome)
            reports[report.cid] = report
            if delivery is not None:
                deliveries[report.cid] = Parcel(delivery)
        return reports, deliveries

    def run_jobs(self, participants: Sequence[int]) -> tuple[dict[int, JobReport], Deliveries]:
        """Prepare, run and complete every job here, one after another."""
        jobs = {job.cid: job for job in self._prepare(participants)}
        return self.complete_jobs(self.run_given_jobs(jobs))

    def end_round(self) -> ServerStats:
        """Round-end server work; the round's server loss, uploads and busy seconds."""
        self.server.end_round()
        loss, uploads = self.server.take_round_stats()
        busy, self.busy_s = self.busy_s, 0.0
        return ServerStats(loss, uploads, busy)

    def device_name(self) -> str:
        return str(self.device)

    # --- state: a shared part, then per-client entries a chunk at a time ----------------
    def snapshot_shared(self) -> dict[str, Any]:
        if self._pending:
            raise UploadOrderError("cannot snapshot the server with uploads still pending")
        return self.server.snapshot_shared()

    def state_ids(self) -> list[int]:
        return self.server.entry_ids()

    def snapshot_entries(self, cids: Sequence[int]) -> dict[int, dict[str, Any]]:
        return {cid: self.server.entry_snapshot(cid) for cid in cids}

    def restore_shared(self, snap: Mapping[str, Any]) -> None:
        """The shared part; every per-client entry back to its initial state."""
        self._pending.clear()
        self.server.restore_shared(snap)

    def restore_entries(self, snaps: Mapping[int, Mapping[str, Any]]) -> None:
        for cid, snap in snaps.items():
            self.server.restore_entry(cid, snap)

    def close_stores(self) -> None:
        """Delete the per-client spill folder now (see ClientHost.close_stores)."""
        states = getattr(self.server, "states", None)
        if states is not None:
            states.close()

    def restore(self, snap: Mapping[str, Any]) -> None:
        """All at once (a checkpoint of format 2, which kept every state inline)."""
        self._pending.clear()
        self.server.restore(snap)

    def eval_models(self, client_state: Mapping[str, torch.Tensor]) -> Parcel:
        """(client model with this state, the server's eval head), on the CPU, for workers
        that evaluate a share of the test batches."""
        load_transfer_state(self.eval_client, client_state)
        models = (self.eval_client, self.server.eval_head())
        if self.device.type == "cpu":
            return Parcel(models)
        return Parcel(tuple(copy.deepcopy(m).cpu() for m in models))

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

    def inspect(self, measure: Callable[..., Any], parts: Mapping[str, Any], *args: Any) -> Any:
        """`measure(self, parts, *args)` with the evaluation client holding the parts' client
        (or full) part, as `evaluate` loads it: probes read the server's models here and
        change nothing that training uses (Backend.inspect)."""
        load_transfer_state(self.eval_client, parts["full" if "full" in parts else "client"])
        return measure(self, parts, *args)

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
