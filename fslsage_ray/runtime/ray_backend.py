"""Runs the rounds on Ray: client actors sized to the cluster, one async server actor.

The actors' resources are reserved first, as one placement group (runtime/reservation.py),
and every actor starts inside its bundle; a resize or restart replaces the group. Every wait
on an actor has a timeout; a dead or silent actor surfaces as WorkerLost, and `restart`
replaces every actor (the coordinator then restores their state from a snapshot).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import ray
import ray.exceptions
import torch

from fslsage_ray.algorithms.base import State
from fslsage_ray.algorithms.jobs import JobReport
from fslsage_ray.config.schema import ConfigError, RuntimeConfig
from fslsage_ray.experiment import WorldSpec
from fslsage_ray.runtime.actors import ClientActor, ServerActor
from fslsage_ray.runtime.backend import Backend, ServerStats, WorkerLost
from fslsage_ray.runtime.client_host import ClientResult
from fslsage_ray.runtime.cluster import alive_nodes, connect, shutdown_private
from fslsage_ray.runtime.placement import ActorPlan, ray_options
from fslsage_ray.runtime.reservation import (
    bundle_nodes,
    in_bundle,
    plan_on_cluster,
    release,
    reserve,
)
from fslsage_ray.runtime.server_host import ServerHost
from fslsage_ray.tasks.base import add_sums, batch_ranges

log = logging.getLogger("fslsage_ray")
STARTUP_TIMEOUT_S = 300.0
_LOST = (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError)


class RayBackend(Backend):
    # --- life cycle ---------------------------------------------------------------------
    def __init__(self, runtime: RuntimeConfig, uses_server: bool = True) -> None:
        self.runtime = runtime
        self.uses_server = uses_server  # False (FedAvg): no server actor, no server bundle
        self.started_ray = False
        self.plan: ActorPlan | None = None
        self.group = None  # the placement group holding every actor's bundle
        self.placed: list[str] = []  # the node each bundle landed on
        self.server = None  # the server actor; None for an algorithm without a server
        self.driver_server: ServerHost | None = None  # its stand-in work then, on the driver
        self.actors: list = []
        self.devices: list[str] = []  # server first, then each client actor
        self.timeout_s = runtime.call_timeout_s

    def validate(self, num_clients: int) -> None:
        """Plan for the nodes alive now and reserve the plan: refused here, before any run
        folder or actor exists, if it cannot be placed."""
        self.started_ray = connect(self.runtime) or self.started_ray
        self._reserve(plan_on_cluster(self.runtime, num_clients, self.uses_server))

    def _reserve(self, plan: ActorPlan) -> None:
        self.plan = plan
        self.group = reserve(plan, self.runtime.placement_timeout_s)
        self.placed = bundle_nodes(self.group)

    def start(self, world: WorldSpec, train, test, parts: Sequence[np.ndarray]) -> None:
        if self.plan is None:
            self.validate(len(parts))
        # The arrays go to the object store once; every actor (and any replacement) reads
        # them zero-copy.
        self._world = world
        self._parts = list(parts)
        self._test = test
        self._train_ref, self._test_ref = ray.put(dict(train)), ray.put(dict(test))
        self._create_actors()

    def _create_actors(self) -> None:
        plan, sizes = self.plan, {c: len(p) for c, p in enumerate(self._parts)}
        if self.uses_server:
            server = ray_options(plan.server_request)
            if plan.server_bundle is not None:  # a server asking for nothing needs no bundle
                server |= in_bundle(self.group, plan.server_bundle)
            self.server = ServerActor.options(**server).remote(self._world, self._test_ref, sizes)
        else:  # FedAvg: no process of its own for a server that only hands out eval models
            self.server = None
            self.driver_server = ServerHost(self._world, self._test, sizes, torch.device("cpu"))
        self.actors = [
            ClientActor.options(
                **ray_options(plan.actor_request), **in_bundle(self.group, plan.actor_bundle(i))
            ).remote(self._world, self._train_ref, {c: self._parts[c] for c in group}, self.server)
            for i, group in enumerate(plan.groups)
        ]
        waits = [a.num_batches.remote() for a in self.actors]
        if self.server is not None:
            waits.append(self.server.ready.remote())
        ready, _ = ray.wait(waits, num_returns=len(waits), timeout=STARTUP_TIMEOUT_S)
        if len(ready) < len(waits):
            raise ConfigError(
                f"only {len(ready)} of {len(waits)} actors started within {STARTUP_TIMEOUT_S}s; "
                f"the cluster cannot place {self.plan.describe()}"
            )
        ray.get(ready)
        clients = ray.get([a.device.remote() for a in self.actors])
        server = "none" if self.server is None else ray.get(self.server.device.remote())
        self.devices = [server, *clients]

    def _elastic(self) -> bool:
        return self.runtime.num_actors is None and self.runtime.clients_per_actor is None

    def maybe_resize(self) -> bool:
        """Re-read the nodes; if the pool should change size, reserve a new placement group
        for it and move every client's state (back to the old size if Ray cannot place it)."""
        if not self._elastic():
            return False
        try:
            plan = plan_on_cluster(self.runtime, len(self._parts), self.uses_server)
        except ConfigError:
            return False  # nothing fits right now: keep the actors we have
        if plan.num_actors == self.plan.num_actors:
            return False
        snap, old = self.snapshot(), self.plan
        self._release()  # the new group needs the resources the old one holds
        try:
            self._reserve(plan)
        except ConfigError as exc:
            log.warning("worker pool not resized: %s", exc)
            try:
                self._reserve(old)
            except ConfigError as again:  # the coordinator replaces the workers, or stops
                raise WorkerLost(f"the pool could not be placed again: {again}") from again
        self._create_actors()
        self.restore(snap)
        return self.plan is plan

    def restart(self) -> None:
        """Replace every actor in a new placement group on the nodes left (a node may have
        gone): an elastic pool sized to them, a fixed one as before (or refused)."""
        self._release()
        self._reserve(self._settled_plan())
        self._create_actors()

    def _settled_plan(self, wait_s: float = 30.0) -> ActorPlan:
        """The cluster takes a moment to notice a lost node: wait for two equal readings."""
        deadline = time.monotonic() + wait_s
        last = alive_nodes()
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = alive_nodes()
            if now == last:
                break
            last = now
        return plan_on_cluster(self.runtime, len(self._parts), self.uses_server)

    def _release(self) -> None:
        """End every actor and give back their placement group."""
        for handle in [*self.actors, self.server]:
            if handle is not None:
                try:
                    ray.kill(handle)
                except ray.exceptions.RayError:
                    pass  # already gone
        self.actors, self.server = [], None
        release(self.group)
        self.group, self.placed = None, []

    def close(self) -> None:
        self._release()
        shutdown_private(self.started_ray)
        self.started_ray = False

    def _get(self, refs):
        try:
            return ray.get(refs, timeout=self.timeout_s)
        except _LOST as exc:
            raise WorkerLost(f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
        except ray.exceptions.RayTaskError as exc:
            # A client actor that was waiting on the server when the server died.
            if isinstance(exc.cause, _LOST):
                raise WorkerLost(f"{type(exc.cause).__name__} inside {exc.function_name}") from exc
            raise

    # --- rounds -------------------------------------------------------------------------
    def num_batches(self) -> dict[int, int]:
        merged: dict[int, int] = {}
        for part in self._get([a.num_batches.remote() for a in self.actors]):
            merged.update(part)
        return merged

    def start_round(self, parts: Mapping[str, State], expected, participants) -> None:
        self.participants = list(participants)
        parts_ref = ray.put(dict(parts))  # once in the object store, read by every actor
        expected = None if expected is None else list(expected)
        if self.server is None:
            self.driver_server.begin_round(expected)
        else:
            self._get(self.server.begin_round.remote(expected))
        self._get([a.start_round.remote(parts_ref, self.participants) for a in self.actors])

    def run_local(
        self,
        start: int,
        stop: int | None,
        only: Sequence[int] | None = None,
        hold_last: bool = False,
    ) -> None:
        chosen = None if only is None else set(only)
        self._get(
            [
                actor.run_local.remote(
                    start, stop, None if chosen is None else sorted(chosen), hold_last
                )
                for actor, group in zip(self.actors, self.plan.groups, strict=True)
                if chosen is None or chosen.intersection(group)
            ]
        )

    def run_server_jobs(
        self, it_limit: int, only: Sequence[int] | None = None
    ) -> dict[int, JobReport]:
        clients = None if only is None else list(only)
        self._get(self.server.wait_processed.remote(it_limit, self.timeout_s, clients))
        chosen = self.participants if only is None else list(only)
        if self.runtime.align_on == "server":
            reports, delivery_refs = self._get(self.server.run_jobs.remote(chosen))
        else:
            reports, delivery_refs = self._jobs_on_workers(chosen)
        if delivery_refs:
            self._get(
                [
                    actor.accept_deliveries.remote(
                        {c: delivery_refs[c] for c in group if c in delivery_refs}
                    )
                    for actor, group in zip(self.actors, self.plan.groups, strict=True)
                    if any(c in delivery_refs for c in group)
                ]
            )
        return reports

    def _jobs_on_workers(self, chosen: list[int]) -> tuple[dict[int, JobReport], dict]:
        """The server prepares each client's job; the idle client actors run their own
        clients' jobs in parallel and keep the results, the server (when it has compute of
        its own) takes an equal share; the server adopts the outcomes (as refs, not via
        here). A job computes the same wherever it runs."""
        job_refs = self._get(self.server.prepare_jobs.remote(chosen))
        hosted = [[c for c in group if c in job_refs] for group in self.plan.groups]
        on_server = server_share(hosted) if self._server_fits_jobs() else []
        outcome_refs = [
            actor.run_jobs.remote([job_refs[c] for c in cids if c not in on_server])
            for actor, cids in zip(self.actors, hosted, strict=True)
            if any(c not in on_server for c in cids)
        ]
        if on_server:
            outcome_refs.append(self.server.run_given_jobs.remote([job_refs[c] for c in on_server]))
        return self._get(self.server.complete_jobs.remote(*outcome_refs))

    def _server_fits_jobs(self) -> bool:
        return self.runtime.align_on == "workers" and self._server_has_compute()

    def _server_has_compute(self) -> bool:
        """A server with CPUs or GPUs of its own takes a share of work the client actors
        could do; one sharing their cores would slow them down as much as it helps."""
        request = self.plan.server_request
        return request.get("CPU", 0.0) > 0 or request.get("GPU", 0.0) > 0

    def finish_round(self) -> tuple[list[ClientResult], ServerStats]:
        if self.server is None:
            (loss, uploads), busy = self.driver_server.end_round(), self.driver_server.take_busy()
        else:
            self._get(self.server.wait_processed.remote(None, self.timeout_s))
            loss, uploads = self._get(self.server.end_round.remote())
            busy = self._get(self.server.take_busy.remote())
        per_actor = self._get([a.finish_round.remote() for a in self.actors])
        results = [r for part in per_actor for r in part]
        return sorted(results, key=lambda r: r.cid), ServerStats(loss, uploads, busy)

    def evaluate(self, client_state: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """On the server alone, or with the test batches shared out over every worker
        (`runtime.eval_on=workers`; the batch terms are added up in batch order, so the
        metrics are the same)."""
        task = self._world.task
        if self.server is None:  # no server actor: the client actors evaluate
            if not task.batched_evaluation:
                return self.driver_server.evaluate(client_state)
            return self._evaluate_on(self.actors, client_state)
        workers = [*self.actors, *([self.server] if self._server_has_compute() else [])]
        if self.runtime.eval_on == "server" or not task.batched_evaluation or len(workers) < 2:
            return self._get(self.server.evaluate.remote(dict(client_state)))
        return self._evaluate_on(workers, client_state)

    def _evaluate_on(self, workers: list, client_state: Mapping[str, torch.Tensor]):
        """The test batches shared out over `workers`, their sums added in batch order."""
        task = self._world.task
        rows = task.num_samples(self._test)
        ranges = batch_ranges(rows, self._world.config.run.eval_batch_size)
        if self.server is None:
            models_ref = ray.put(self.driver_server.eval_models(client_state))
        else:
            (models_ref,) = self._get(self.server.eval_models.remote(dict(client_state)))
        shares = [s for s in np.array_split(np.arange(len(ranges)), len(workers)) if len(s)]
        refs = []
        # Fewer batches than workers: the last workers get none.
        for worker, share in zip(workers, shares, strict=False):
            mine = [ranges[i] for i in share]
            if worker is self.server:
                refs.append(worker.evaluate_batches.remote(mine))
            else:
                refs.append(worker.evaluate_batches.remote(models_ref, self._test_ref, mine))
        sums = [s for part in self._get(refs) for s in part]
        return task.eval_metrics(add_sums(sums), rows)

    # --- state --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        clients: dict[int, Any] = {}
        for part in self._get([a.snapshot.remote() for a in self.actors]):
            clients.update(part)
        if self.server is None:
            return {"clients": clients, "server": self.driver_server.snapshot()}
        return {"clients": clients, "server": self._get(self.server.snapshot.remote())}

    def restore(self, snap: Mapping[str, Any]) -> None:
        clients = snap["clients"]
        refs = [
            # a client absent from the snapshot never ran: its initial state
            actor.restore.remote({cid: clients[cid] for cid in group if cid in clients})
            for actor, group in zip(self.actors, self.plan.groups, strict=True)
        ]
        if self.server is None:
            self.driver_server.restore(snap["server"])
        else:
            refs.append(self.server.restore.remote(snap["server"]))
        self._get(refs)

    def cluster_nodes(self) -> list[dict[str, float]]:
        return [node.resources for node in alive_nodes()]

    def describe(self) -> str:
        if self.plan is None:
            return "ray (not started)"
        text = f"ray: {self.plan.describe()}"
        if self.placed:  # where Ray put the bundles
            counts = Counter(self.placed[self.plan.actor_bundle(0) :])
            if self.plan.server_bundle is not None and self.server is not None:
                text += f"; server on {self.placed[self.plan.server_bundle]}"
            text += "; client actors on " + ", ".join(f"{n} x{k}" for n, k in counts.items())
        if self.devices:  # where the work really runs, as the actors saw it at start
            server, *clients = self.devices
            where = ", ".join(sorted(set(clients)))
            if self.server is None:
                text += "; no server actor (nothing goes to a main server: the driver averages)"
                text += f"; computing on: clients {where}"
            else:
                text += f"; computing on: server {server}, clients {where}"
        return text


def server_share(hosted: Sequence[Sequence[int]]) -> list[int]:
    """Which jobs the server takes so that it and every client actor run about as many:
    repeatedly the last job of the actor with the most left (sorted client ids)."""
    left = [list(cids) for cids in hosted]
    total = sum(len(cids) for cids in left)
    taken: list[int] = []
    while len(taken) < total // (len(left) + 1):
        busiest = max(range(len(left)), key=lambda i: (len(left[i]), i))
        taken.append(left[busiest].pop())
    return sorted(taken)
