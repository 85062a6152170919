"""The Ray actors: thin shells that run a ClientHost's or ServerHost's verbs by name.

An actor adds only what being in a process of its own needs: parcels (handles.py) leave as
object-store references and arrive as values, so model states and jobs go from host to host
without passing through the driver; and the server, an async actor, takes uploads while
the coordinator waits for them. Everything else, uploads gathered and back-pressured and
SplitFed batches pipelined included, is the same code as in one process (channel.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import ray
import torch

from fslsage_ray.experiment import WorldSpec
from fslsage_ray.registry import load_plugins
from fslsage_ray.runtime import tensor_wire
from fslsage_ray.runtime.allocator import prepare_process
from fslsage_ray.runtime.client_host import ClientHost
from fslsage_ray.runtime.device import choose_device
from fslsage_ray.runtime.handles import Parcel
from fslsage_ray.runtime.oom import CLIENT, SERVER, ActorOutOfMemory, first_line, is_out_of_memory
from fslsage_ray.runtime.server_host import ServerHost, UploadOrderError
from fslsage_ray.tasks.base import Arrays


class RemoteHandle:
    """A host in a Ray actor: a call is an actor call, its reply an object reference."""

    local = False

    def __init__(self, actor: ray.actor.ActorHandle) -> None:
        self.actor = actor

    def call(self, verb: str, *args: Any) -> ray.ObjectRef:
        return self.actor.call.remote(verb, *args)

    def get(self, reply: ray.ObjectRef) -> Any:
        return ray.get(reply)

    def first_done(self, replies: Sequence[ray.ObjectRef]) -> ray.ObjectRef:
        (done,), _ = ray.wait(list(replies), num_returns=1)
        return done


def _sealed(result: Any) -> Any:
    """A host's result as it leaves the actor: each parcel put in the object store."""
    if isinstance(result, Parcel):
        return ray.put(result.value)
    if isinstance(result, tuple):
        return tuple(_sealed(x) for x in result)
    if isinstance(result, Mapping) and any(isinstance(v, Parcel) for v in result.values()):
        return {k: _sealed(v) for k, v in result.items()}
    return result


def _refs_in(arg: Any) -> list[ray.ObjectRef]:
    """Parcels that arrived as references inside a dict (Ray resolves only top-level ones)."""
    if isinstance(arg, Mapping):
        return [v for v in arg.values() if isinstance(v, ray.ObjectRef)]
    return []


def _with_values(arg: Any, values: Mapping[ray.ObjectRef, Any]) -> Any:
    if not _refs_in(arg):
        return arg
    return {k: values.get(v, v) if isinstance(v, ray.ObjectRef) else v for k, v in arg.items()}


def _prepare_process(world: WorldSpec) -> None:
    load_plugins(world.config.plugins)  # the user's registered names, in this process too
    prepare_process(world.config.runtime)
    tensor_wire.register()  # what this actor sends: tensors as raw bytes


def _device(world: WorldSpec) -> torch.device:
    return choose_device(world.config.runtime.device, gpu_assigned=bool(ray.get_gpu_ids()))


def _span(assignment: Mapping[int, Any]) -> str:
    ids = sorted(assignment)
    return f"{ids[0]}-{ids[-1]}" if len(ids) > 1 else str(ids[0]) if ids else "none"


@contextmanager
def _out_of_memory_named(role: str, where: str) -> Iterator[None]:
    """An out-of-memory error leaves the actor as ActorOutOfMemory, saying which actor ran
    out: the run restarts the actors with a smaller setting (runtime/oom.py) instead of
    treating it as any failure."""
    try:
        yield
    except Exception as exc:
        if is_out_of_memory(exc):
            raise ActorOutOfMemory(role, where, first_line(exc)) from exc
        raise


@ray.remote
class ClientActor:
    def __init__(
        self,
        world: WorldSpec,
        train: Arrays,
        assignment: dict[int, np.ndarray],
        server: RemoteHandle | None,
    ) -> None:
        _prepare_process(world)
        self.host = ClientHost(world, train, assignment, _device(world), server)
        self.name = f"client actor hosting clients {_span(assignment)}"

    def call(self, verb: str, *args: Any) -> Any:
        refs = [ref for arg in args for ref in _refs_in(arg)]
        values = dict(zip(refs, ray.get(refs), strict=True))
        with _out_of_memory_named(CLIENT, self.name):
            return _sealed(getattr(self.host, verb)(*(_with_values(a, values) for a in args)))


@ray.remote
class ServerActor:
    """Async: uploads are taken while a `wait_processed` call waits for them."""

    def __init__(self, world: WorldSpec, test: Arrays, client_sizes: dict[int, int]) -> None:
        _prepare_process(world)
        self.host = ServerHost(world, test, client_sizes, _device(world))
        self.timeout_s = world.config.runtime.call_timeout_s
        self._changed: asyncio.Event | None = None

    async def call(self, verb: str, *args: Any) -> Any:
        refs = [ref for arg in args for ref in _refs_in(arg)]
        values = dict(zip(refs, await asyncio.gather(*refs), strict=True))
        args = tuple(_with_values(a, values) for a in args)
        if verb == "wait_processed":  # uploads may still be on their way: wait for them
            return await self._wait_processed(*args)
        with _out_of_memory_named(SERVER, "server actor"):
            result = getattr(self.host, verb)(*args)
        self._event().set()  # uploads may have been applied
        return _sealed(result)

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    async def _wait_processed(self, it_limit: int | None, clients: list[int] | None) -> None:
        """Return once every expected upload before it_limit (of `clients`) is applied, or
        fail loudly."""
        deadline = time.monotonic() + self.timeout_s
        event = self._event()
        while not self.host.processed_before(it_limit, clients):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = self.host.missing_before(it_limit, clients)
                raise UploadOrderError(
                    f"uploads did not arrive within {self.timeout_s}s: {missing[:5]}"
                )
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), timeout=min(remaining, 1.0))
            except asyncio.TimeoutError:
                pass
