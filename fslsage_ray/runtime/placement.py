"""How many client actors the cluster can hold, and which clients each one hosts.

Capacity is summed over nodes for every resource the actor asks for, after the server's own
share is set aside; a request the cluster can never satisfy is an error before any actor
is created, not an actor left pending forever.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fslsage_ray.config.schema import ConfigError, RuntimeConfig

_EPS = 1e-9


@dataclass(frozen=True)
class ActorPlan:
    groups: tuple[tuple[int, ...], ...]  # client ids hosted by each client actor
    actor_request: dict[str, float]
    server_request: dict[str, float]
    capacity: int  # how many client actors the resources would allow

    @property
    def num_actors(self) -> int:
        return len(self.groups)

    def describe(self) -> str:
        sizes = sorted({len(g) for g in self.groups})
        per = "-".join(str(s) for s in (sizes[0], sizes[-1])) if len(sizes) > 1 else str(sizes[0])
        return (
            f"{self.num_actors} client actor(s) x {self.actor_request} "
            f"({per} clients each; room for {self.capacity}), "
            f"server actor x {self.server_request}"
        )


def _request(cpus: float, gpus: float, memory_gb: float, custom: dict[str, float]) -> dict:
    """In Ray's resource names; memory in bytes, as ray.cluster_resources() reports it."""
    req = {"CPU": cpus, "GPU": gpus, "memory": memory_gb * 1024**3, **custom}
    return {k: v for k, v in req.items() if v > 0}


def actor_request(runtime: RuntimeConfig) -> dict[str, float]:
    return _request(
        runtime.actor_num_cpus,
        runtime.actor_num_gpus,
        runtime.actor_memory_gb,
        runtime.actor_resources,
    )


def server_request(runtime: RuntimeConfig) -> dict[str, float]:
    return _request(
        runtime.server_num_cpus,
        runtime.server_num_gpus,
        runtime.server_memory_gb,
        runtime.server_resources,
    )


def ray_options(request: dict[str, float]) -> dict:
    """Keyword arguments for ActorClass.options(...)."""
    custom = {k: v for k, v in request.items() if k not in ("CPU", "GPU", "memory")}
    options = {"num_cpus": request.get("CPU", 0.0), "num_gpus": request.get("GPU", 0.0)}
    if request.get("memory"):
        options["memory"] = int(request["memory"])
    if custom:
        options["resources"] = custom
    return options


def plan_actors(runtime: RuntimeConfig, num_clients: int, resources: dict[str, float]) -> ActorPlan:
    actor = actor_request(runtime)
    server = server_request(runtime)
    for name, amount in server.items():
        if resources.get(name, 0.0) + _EPS < amount:
            raise ConfigError(
                f"the server actor asks for {name}={amount:g} but the cluster has "
                f"{resources.get(name, 0.0):g}; lower the runtime.server_* request"
            )
    capacity = num_clients
    for name, amount in actor.items():
        free = resources.get(name, 0.0) - server.get(name, 0.0)
        capacity = min(capacity, math.floor(free / amount + _EPS))
    if capacity < 1:
        raise ConfigError(
            f"no client actor fits: each asks for {actor}, the server for {server}, and the "
            f"cluster has { ({k: resources.get(k, 0.0) for k in actor}) }; lower "
            "the runtime.actor_* request or add resources"
        )
    if runtime.clients_per_actor is not None:
        wanted = math.ceil(num_clients / runtime.clients_per_actor)
    elif runtime.num_actors is not None:
        wanted = min(runtime.num_actors, num_clients)
    else:
        wanted = capacity
    if wanted > capacity:
        raise ConfigError(
            f"{wanted} client actors asked for, but the cluster has room for {capacity} "
            f"(each asks for {actor})"
        )
    groups = tuple(tuple(int(c) for c in g) for g in np.array_split(np.arange(num_clients), wanted))
    return ActorPlan(groups, actor, server, capacity)
