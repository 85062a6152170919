"""Runs the rounds on Ray: client actors sized to the cluster, one async server actor.

Only the actors' life cycle is here; the rounds are backend.py's, over remote handles (and a
local one for the server of an algorithm that sends nothing to it: FedAvg starts no server
actor, its round bookkeeping and evaluation models live on the driver).

The actors' resources are reserved first, as one placement group (runtime/reservation.py),
and every actor starts inside its bundle; a resize or restart replaces the group. Every wait
on an actor has a timeout; a dead or silent actor surfaces as WorkerLost (an actor out of
memory as OutOfMemory, runtime/oom.py), and `restart` replaces every actor, with smaller
settings after an out-of-memory error (the coordinator then restores their state from a
snapshot).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.exceptions
import torch

from fslsage_ray.config.schema import ConfigError, RuntimeConfig
from fslsage_ray.experiment import WorldSpec
from fslsage_ray.runtime.actors import ClientActor, RemoteHandle, ServerActor
from fslsage_ray.runtime.backend import Backend, WorkerLost, server_share
from fslsage_ray.runtime.cluster import alive_nodes, connect, shutdown_private
from fslsage_ray.runtime.handles import Done, LocalHandle, Parcel
from fslsage_ray.runtime.oom import OutOfMemory, first_line, out_of_memory_in
from fslsage_ray.runtime.placement import ActorLayout, ray_options
from fslsage_ray.runtime.reservation import (
    bundle_nodes,
    in_bundle,
    layout_on_cluster,
    release,
    reserve,
)
from fslsage_ray.runtime.server_host import ServerHost
from fslsage_ray.runtime.state_file import StatesReader, StatesWriter, states_file_name

__all__ = ["RayBackend", "server_share"]

log = logging.getLogger("fslsage_ray")
STARTUP_TIMEOUT_S = 300.0
CLOSE_TIMEOUT_S = 10.0  # for actors to delete their spill folders before they are killed
_LOST = (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError)


def _killed_for_memory(exc: ray.exceptions.OutOfMemoryError) -> OutOfMemory:
    """Ray names the node and the worker it killed, not which of our actors that was."""
    return OutOfMemory(None, "a worker killed by Ray's memory monitor", first_line(exc))


class RayBackend(Backend):
    # --- life cycle ---------------------------------------------------------------------
    shares_work = True  # the client actors (and a server with CPUs of its own) share work

    def __init__(self, runtime: RuntimeConfig, uses_server: bool = True) -> None:
        self.runtime = runtime
        self.uses_server = uses_server  # False (FedAvg): no server actor, no server bundle
        self.started_ray = False
        self.layout: ActorLayout | None = None
        self.group = None  # the placement group holding every actor's bundle
        self.placed: list[str] = []  # the node each bundle landed on
        self.server_actor = None  # None for an algorithm without a server (FedAvg)
        self.actors: list = []  # the client actors, as Ray knows them
        self.devices: list[str] = []  # server first, then each client actor
        self.timeout_s = runtime.call_timeout_s

    def validate(self, num_clients: int) -> None:
        """Lay out for the nodes alive now and reserve the layout: refused here, before any run
        folder or actor exists, if it cannot be placed."""
        self.started_ray = connect(self.runtime) or self.started_ray
        self._reserve(layout_on_cluster(self.runtime, num_clients, self.uses_server))

    def _reserve(self, layout: ActorLayout) -> None:
        self.layout = layout
        self.group = reserve(layout, self.runtime.placement_timeout_s)
        self.placed = bundle_nodes(self.group)

    def start(self, world: WorldSpec, train, test, parts: Sequence[np.ndarray]) -> None:
        if self.layout is None:
            self.validate(len(parts))
        # The arrays go to the object store once; every actor (and any replacement) reads
        # them zero-copy.
        self.world = world
        self._parts = list(parts)
        self._test_arrays = test
        self.test_rows = world.task.num_samples(test)
        self._train_ref, self.test = ray.put(dict(train)), ray.put(dict(test))
        self._create_actors()

    def _create_actors(self) -> None:
        layout, sizes = self.layout, {c: len(p) for c, p in enumerate(self._parts)}
        if self.uses_server:
            server = ray_options(layout.server_request)
            if layout.server_bundle is not None:  # a server asking for nothing needs no bundle
                server |= in_bundle(self.group, layout.server_bundle)
            self.server_actor = ServerActor.options(**server).remote(self.world, self.test, sizes)
            self.server = RemoteHandle(self.server_actor)
        else:  # FedAvg: no process of its own for a server that only hands out eval models
            self.server_actor = None
            host = ServerHost(self.world, self._test_arrays, sizes, torch.device("cpu"))
            self.server = LocalHandle(host)
        reach = self.server if self.uses_server else None  # what the clients upload to
        self.groups = [list(group) for group in layout.groups]
        self.actors = [
            ClientActor.options(
                **ray_options(layout.actor_request), **in_bundle(self.group, layout.actor_bundle(i))
            ).remote(self.world, self._train_ref, {c: self._parts[c] for c in group}, reach)
            for i, group in enumerate(self.groups)
        ]
        self.clients = [RemoteHandle(actor) for actor in self.actors]
        waits = [h.call("device_name") for h in (self.server, *self.clients)]
        pending = [w for w in waits if isinstance(w, ray.ObjectRef)]
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=STARTUP_TIMEOUT_S)
        if len(ready) < len(pending):
            raise ConfigError(
                f"only {len(ready)} of {len(pending)} actors started within "
                f"{STARTUP_TIMEOUT_S}s; the cluster cannot place {self.layout.describe()}"
            )
        server, *clients = self._get(waits)
        self.devices = [server if self.uses_server else "none", *clients]

    def _elastic(self) -> bool:
        return self.runtime.num_actors is None and self.runtime.clients_per_actor is None

    def maybe_resize(self) -> bool:
        """Re-read the nodes; if the pool should change size, reserve a new placement group
        for it and move every client's state (back to the old size if Ray cannot place it)."""
        if not self._elastic():
            return False
        try:
            layout = layout_on_cluster(self.runtime, len(self._parts), self.uses_server)
        except ConfigError:
            return False  # nothing fits right now: keep the actors we have
        if layout.num_actors == self.layout.num_actors:
            return False
        old = self.layout
        with tempfile.TemporaryDirectory(prefix="fslsage-resize-") as folder:
            writer = StatesWriter(Path(folder) / states_file_name(0))
            try:
                saved = self.save_state(writer)
            except BaseException:
                writer.abandon()
                raise
            reader = StatesReader(Path(folder), writer.finish())
            self._release()  # the new group needs the resources the old one holds
            try:
                self._reserve(layout)
            except ConfigError as exc:
                log.warning("worker pool not resized: %s", exc)
                try:
                    self._reserve(old)
                except ConfigError as again:  # the coordinator replaces the workers, or stops
                    raise WorkerLost(f"the pool could not be placed again: {again}") from again
            self._create_actors()
            self.load_state(saved, reader)
        return self.layout is layout

    def restart(self, runtime: RuntimeConfig | None = None) -> None:
        """Replace every actor in a new placement group on the nodes left (a node may have
        gone): an elastic pool sized to them, a fixed one as before (or refused). With
        `runtime`, the new actors run with these settings (after an out-of-memory error: a
        smaller in-flight window or state budget, runtime/oom.py)."""
        if runtime is not None:
            self.runtime = runtime
            config = dataclasses.replace(self.world.config, runtime=runtime)
            self.world = dataclasses.replace(self.world, config=config)  # what the hosts read
        self._release()
        self._reserve(self._settled_plan())
        self._create_actors()

    def _settled_plan(self, wait_s: float = 30.0) -> ActorLayout:
        """The cluster takes a moment to notice a lost node: wait for two equal readings."""
        deadline = time.monotonic() + wait_s
        last = alive_nodes()
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = alive_nodes()
            if now == last:
                break
            last = now
        return layout_on_cluster(self.runtime, len(self._parts), self.uses_server)

    def _release(self) -> None:
        """End every actor and give back their placement group; first, while they still
        answer, each deletes its spill folder (ray.kill runs no finalizer)."""
        closing = []
        remote = [*getattr(self, "clients", [])]
        if self.server_actor is not None:
            remote.append(self.server)
        for handle in remote:
            try:
                closing.append(handle.call("close_stores"))
            except ray.exceptions.RayError:
                pass  # already gone
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT_S)
        for actor in [*self.actors, self.server_actor]:
            if actor is not None:
                try:
                    ray.kill(actor)
                except ray.exceptions.RayError:
                    pass  # already gone
        self.actors, self.clients, self.server_actor = [], [], None
        release(self.group)
        self.group, self.placed = None, []

    def close(self) -> None:
        self._release()
        shutdown_private(self.started_ray)
        self.started_ray = False

    # --- waiting on the actors -------------------------------------------------------------
    def _get(self, replies: Sequence[Any]) -> list[Any]:
        """Every wait has a timeout; a dead or silent actor surfaces as WorkerLost."""
        refs = [r for r in replies if isinstance(r, ray.ObjectRef)]
        try:
            got = iter(ray.get(refs, timeout=self.timeout_s))
        except _LOST as exc:
            raise WorkerLost(f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
        except ray.exceptions.OutOfMemoryError as exc:  # Ray's memory monitor killed a worker
            raise _killed_for_memory(exc) from exc
        except ray.exceptions.RayTaskError as exc:
            oom = out_of_memory_in(exc)  # an actor (or one it waited on) ran out of memory
            if oom is None and isinstance(exc.cause, ray.exceptions.OutOfMemoryError):
                oom = _killed_for_memory(exc.cause)
            if oom is not None:
                raise oom from exc
            # A client actor that was waiting on the server when the server died.
            if isinstance(exc.cause, _LOST):
                raise WorkerLost(f"{type(exc.cause).__name__} inside {exc.function_name}") from exc
            raise
        return [next(got) if isinstance(r, ray.ObjectRef) else r.value for r in replies]

    def _share(self, value: Any) -> Any:
        if isinstance(value, ray.ObjectRef):
            return value  # already in the store
        return ray.put(value.value if isinstance(value, Parcel | Done) else value)

    def _server_computes(self) -> bool:
        """A server actor with CPUs or GPUs of its own takes a share of work the client
        actors could do; one sharing their cores would slow them down as much as it helps."""
        request = self.layout.server_request
        own = request.get("CPU", 0.0) > 0 or request.get("GPU", 0.0) > 0
        return own and not self.server.local

    def cluster_nodes(self) -> list[dict[str, float]]:
        return [node.resources for node in alive_nodes()]

    def describe(self) -> str:
        if self.layout is None:
            return "ray (not started)"
        text = f"ray: {self.layout.describe()}"
        if self.placed:  # where Ray put the bundles
            counts = Counter(self.placed[self.layout.actor_bundle(0) :])
            if self.layout.server_bundle is not None and self.uses_server:
                text += f"; server on {self.placed[self.layout.server_bundle]}"
            text += "; client actors on " + ", ".join(f"{n} x{k}" for n, k in counts.items())
        if self.devices:  # where the work really runs, as the actors saw it at start
            server, *clients = self.devices
            where = ", ".join(sorted(set(clients)))
            if not self.uses_server:
                text += "; no server actor (nothing goes to a main server: the driver averages)"
                text += f"; computing on: clients {where}"
            else:
                text += f"; computing on: server {server}, clients {where}"
        return text
