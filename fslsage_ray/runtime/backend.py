"""The interface the coordinator drives a round through, and the round protocol, written once.

A backend decides only where the hosts live, never what they compute: it creates a server
host and client hosts and hands out a handle to each (runtime/handles.py), in this process
(InProcessBackend) or in Ray actors (RayBackend). Every round verb below is the same code
for both; a server verb is a method of ServerHost called from here, and nowhere else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fslsage_ray.algorithms.base import State
from fslsage_ray.algorithms.jobs import JobReport
from fslsage_ray.config import Config
from fslsage_ray.config.schema import RuntimeConfig
from fslsage_ray.experiment import WorldSpec
from fslsage_ray.runtime.client_host import ClientResult
from fslsage_ray.runtime.handles import Handle, opened, parcels_for
from fslsage_ray.runtime.server_host import Key, ServerStats
from fslsage_ray.runtime.state_file import StatesReader, StatesWriter
from fslsage_ray.tasks.base import Arrays, add_sums, batch_ranges

__all__ = ["Backend", "ServerStats", "WorkerLost"]


# States travel between a host and the driver in chunks of about this size (one record or more).
CHUNK_BYTES = 64 * 1024**2


class WorkerLost(RuntimeError):
    """A worker died or stopped answering; the round's work must be redone elsewhere."""


class Backend(ABC):
    # Set by `start`: the server, the client hosts and the clients each one holds.
    server: Handle
    clients: list[Handle]
    groups: list[list[int]]
    world: WorldSpec
    test: Any  # the test split as the hosts read it (on Ray, a reference to it)
    test_rows: int
    # Several processes: server jobs and evaluation may be shared out over the workers
    # (runtime.align_on, runtime.eval_on); in one process they run on the server.
    shares_work: bool = False

    @abstractmethod
    def start(
        self,
        world: WorldSpec,
        train: Arrays,
        test: Arrays,
        parts: Sequence[np.ndarray],
    ) -> None:
        """Create the clients (all of them, with their data indices) and the server."""

    def validate(self, num_clients: int) -> None:  # noqa: B027 - optional hook
        """Refuse, before any run folder or actor exists, what can never run here."""

    # --- how replies are awaited (Ray adds timeouts and lost workers) ------------------------
    def _get(self, replies: Sequence[Any]) -> list[Any]:
        """The results of these calls' replies, in order."""
        return [reply.value for reply in replies]

    def _share(self, value: Any) -> Any:
        """A value every host reads (put once in Ray's object store)."""
        return opened(value)

    def _server_computes(self) -> bool:
        """The server has processors of its own to take a share of the workers' work."""
        return False

    # --- rounds ----------------------------------------------------------------------------
    def num_batches(self) -> dict[int, int]:
        """Local iterations per client this round, K_i."""
        merged: dict[int, int] = {}
        for part in self._get([host.call("num_batches") for host in self.clients]):
            merged.update(part)
        return merged

    def start_round(
        self,
        parts: Mapping[str, State],
        expected: Sequence[Key] | None,
        participants: Sequence[int],
    ) -> None:
        """Broadcast the aggregated parts to this round's participants; tell the server
        which uploads come (if ordered)."""
        self.participants = list(participants)
        shared = self._share(dict(parts))  # once, read by every host
        self._get([self.server.call("begin_round", None if expected is None else list(expected))])
        self._get([host.call("start_round", shared, self.participants) for host in self.clients])

    def run_local(
        self,
        start: int,
        stop: int | None,
        only: Sequence[int] | None = None,
        hold_last: bool = False,
    ) -> None:
        """Clients (all, or `only` these) run local iterations [start, stop); with
        `hold_last` the last one waits for the client's next call (see LocalPhase)."""
        chosen = None if only is None else sorted(set(only))
        self._get(
            [
                host.call("run_local", start, stop, chosen, hold_last)
                for host, group in zip(self.clients, self.groups, strict=True)
                if chosen is None or set(chosen).intersection(group)
            ]
        )

    def run_server_jobs(
        self, it_limit: int, only: Sequence[int] | None = None
    ) -> dict[int, JobReport]:
        """Wait for the uploads before it_limit (of `only` these clients), run the server's
        job for every participant (or `only` these; algorithms/jobs.py), and deliver the
        results to their clients."""
        clients = None if only is None else list(only)
        self._get([self.server.call("wait_processed", it_limit, clients)])
        chosen = sorted(self.participants if only is None else only)
        reports: dict[int, JobReport] = {}
        for window in job_windows(chosen, self.world.config):
            reports.update(self._run_job_window(window))
        return reports

    def _run_job_window(self, chosen: list[int]) -> dict[int, JobReport]:
        """Jobs of these clients (consecutive in client order), run and delivered."""
        if self.shares_work and self.world.config.runtime.align_on != "server":
            reports, deliveries = self._jobs_on_workers(chosen)
        else:
            ((reports, deliveries),) = self._get([self.server.call("run_jobs", chosen)])
        self._get(
            [
                host.call("accept_deliveries", parcels_for(deliveries, group))
                for host, group in zip(self.clients, self.groups, strict=True)
                if any(c in deliveries for c in group)
            ]
        )
        return reports

    def _jobs_on_workers(self, chosen: list[int]) -> tuple[dict[int, JobReport], dict]:
        """The server prepares each client's job; the client hosts run their own clients'
        jobs in parallel and keep the results, the server (when it has compute of its own
        and runtime.align_on=workers) takes an equal share; the server adopts the outcomes.
        Jobs and outcomes go host to host, not via here. A job computes the same wherever
        it runs."""
        (jobs,) = self._get([self.server.call("prepare_jobs", chosen)])
        hosted = [[c for c in group if c in jobs] for group in self.groups]
        on_server = (
            server_share(hosted)
            if self.world.config.runtime.align_on == "workers" and self._server_computes()
            else []
        )
        outcomes = [
            host.call("run_jobs", parcels_for(jobs, [c for c in cids if c not in on_server]))
            for host, cids in zip(self.clients, hosted, strict=True)
            if any(c not in on_server for c in cids)
        ]
        if on_server:
            outcomes.append(self.server.call("run_given_jobs", parcels_for(jobs, on_server)))
        (result,) = self._get([self.server.call("complete_jobs", *outcomes)])
        return result

    def finish_round(self) -> tuple[list[ClientResult], ServerStats]:
        """Wait for all uploads, end the server's round; client results (by id), server stats."""
        self._get([self.server.call("wait_processed", None, None)])
        (stats,) = self._get([self.server.call("end_round")])
        per_host = self._get([host.call("finish_round") for host in self.clients])
        results = [r for part in per_host for r in part]
        return sorted(results, key=lambda r: r.cid), stats

    def evaluate(self, client_state: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """The task's test metrics of this client model with the current server model: on
        the server alone, or with the test batches shared out over the workers (their terms
        added in batch order, so the metrics are the same)."""
        workers = [*self.clients, *([self.server] if self._server_computes() else [])]
        spread = self.shares_work and self.world.task.batched_evaluation
        if spread and not self.server.local:  # a server actor evaluates unless told not to
            spread = self.world.config.runtime.eval_on == "workers" and len(workers) > 1
        if not spread:
            (metrics,) = self._get([self.server.call("evaluate", dict(client_state))])
            return metrics
        task = self.world.task
        rows = self.test_rows
        ranges = batch_ranges(rows, self.world.config.run.eval_batch_size)
        (models,) = self._get([self.server.call("eval_models", dict(client_state))])
        models = self._share(models)  # stays in the object store: no copy through here
        shares = [s for s in np.array_split(np.arange(len(ranges)), len(workers)) if len(s)]
        replies = []
        # Fewer batches than workers: the last workers get none.
        for worker, share in zip(workers, shares, strict=False):
            mine = [ranges[i] for i in share]
            if worker is self.server:  # with the models it already holds
                replies.append(worker.call("evaluate_batches", mine))
            else:
                replies.append(worker.call("evaluate_batches", models, self.test, mine))
        sums = [s for part in self._get(replies) for s in part]
        return task.eval_metrics(add_sums(sums), rows)

    def inspect(self, measure: Callable[..., Any], parts: Mapping[str, State], *args: Any) -> Any:
        """`measure(server host, parts, *args)` on the server host, its evaluation client
        holding these parts' client (or full) part: read-only probes of the round's state
        (fslsage_ray/probes), the same code in this process and in a server actor.
        `measure` must be a module-level function (Ray sends its name)."""
        (out,) = self._get([self.server.call("inspect", measure, dict(parts), *args)])
        return out

    # --- state -----------------------------------------------------------------------------
    def save_state(self, writer: StatesWriter) -> dict[str, Any]:
        """At a round boundary: every client's state and the server's per-client entries
        into `writer`, a chunk of about CHUNK_BYTES at a time, so neither this process nor a
        host ever holds all of them (10,000 clients' states are gigabytes); returns the
        server's shared part ({"server": ...}), small."""
        (shared,) = self._get([self.server.call("snapshot_shared")])
        for host in self.clients:
            self._write_entries(host, "clients", writer)
        self._write_entries(self.server, "server", writer)
        return {"server": shared}

    def _write_entries(self, worker: Handle, role: str, writer: StatesWriter) -> None:
        (ids,) = self._get([worker.call("state_ids")])
        start, count = 0, 1  # the first record's size sets the chunk
        while start < len(ids):
            chunk = ids[start : start + count]
            (states,) = self._get([worker.call("snapshot_entries", chunk)])
            for cid in chunk:
                writer.add(role, cid, states.pop(cid))
            start += len(chunk)
            count = max(1, CHUNK_BYTES // max(1, writer.last_bytes))

    def load_state(self, saved: Mapping[str, Any], reader: StatesReader) -> None:
        """Put every client and the server back to what `save_state` wrote (a client without
        a record never ran: its initial state), a chunk at a time."""
        self._get(
            [
                *(host.call("reset_states") for host in self.clients),
                self.server.call("restore_shared", saved["server"]),
            ]
        )
        saved_clients = set(reader.ids("clients"))
        for host, group in zip(self.clients, self.groups, strict=True):
            self._read_entries(host, "clients", [c for c in group if c in saved_clients], reader)
        self._read_entries(self.server, "server", reader.ids("server"), reader)

    def _read_entries(
        self, worker: Handle, role: str, cids: Sequence[int], reader: StatesReader
    ) -> None:
        start, count = 0, 1
        while start < len(cids):
            chunk = cids[start : start + count]
            self._get([worker.call("restore_entries", {c: reader.read(role, c) for c in chunk})])
            start += len(chunk)
            count = max(1, CHUNK_BYTES // max(1, reader.record_bytes(role, chunk[-1])))

    def restore(self, snap: Mapping[str, Any]) -> None:
        """Put every client and the server back to a snapshot held whole in memory (a
        checkpoint of format 2, which kept every state inline)."""
        clients = snap["clients"]
        self._get(
            [
                # a client absent from the snapshot never ran: its initial state
                *(
                    host.call("restore", {cid: clients[cid] for cid in group if cid in clients})
                    for host, group in zip(self.clients, self.groups, strict=True)
                ),
                self.server.call("restore", snap["server"]),
            ]
        )

    # --- life cycle ------------------------------------------------------------------------
    def maybe_resize(self) -> bool:
        """Between rounds: grow or shrink the worker pool to the resources now available."""
        return False

    def restart(self, runtime: RuntimeConfig | None = None) -> None:
        """Replace lost workers with fresh ones (state comes from a following restore); with
        `runtime`, fresh ones running with these settings."""
        raise WorkerLost(f"{self.describe()} cannot replace lost workers")

    def describe(self) -> str:
        return type(self).__name__

    def cluster_nodes(self) -> list[dict[str, float]]:
        """The resources of each node it runs on (for provenance); none in-process."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook: in-process has nothing to release
        """Release processes; safe to call twice."""


def job_windows(chosen: Sequence[int], config: Config) -> list[list[int]]:
    """Clients in order, runtime.job_window at a time (a multiple of alignment.group_size,
    so jobs group as they would all at once), so a round's jobs never all exist at once.
    Preparing a job reads only the server model and that client's state, and adopting it
    writes only that client's, so windows in client order compute what one call does."""
    group = max(1, config.alignment.group_size)
    size = max(group, config.runtime.job_window // group * group)
    return [list(chosen[i : i + size]) for i in range(0, len(chosen), size)] or [[]]


def server_share(hosted: Sequence[Sequence[int]]) -> list[int]:
    """Which jobs the server takes so that it and every client host run about as many:
    repeatedly the last job of the host with the most left (sorted client ids)."""
    left = [list(cids) for cids in hosted]
    total = sum(len(cids) for cids in left)
    taken: list[int] = []
    while len(taken) < total // (len(left) + 1):
        busiest = max(range(len(left)), key=lambda i: (len(left[i]), i))
        taken.append(left[busiest].pop())
    return sorted(taken)
