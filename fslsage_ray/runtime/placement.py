"""How many client actors the cluster can hold, where each goes, and which clients it hosts.

Ray places an actor on one node, and a share of a GPU below one on one GPU: summing the
cluster's resources overestimates (4 GPUs hold 12 actors of 0.3 GPU, not 13). So the layout
packs bundles (the server's first, then one per client actor) into each node's resources and
each GPU's free share, as Ray's raylets allocate them; the backend then reserves exactly this
layout as one placement group, each bundle pinned to its chosen node (unpinned, Ray 2.60
left 12 bundles of 0.3 GPU on nodes of 1 and 3 GPUs pending, retrying a layout that no GPU
can hold). A request no node can hold is an error before any actor is created.

Pure: nodes are plain dicts of Ray resource names (ray.nodes()' "Resources"), no Ray needed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fslsage_ray.config.schema import AUTO, ConfigError, RuntimeConfig

# Resources Ray hands out per device: a share below one comes from a single device, and a
# request of one or more takes whole free devices (ray._private.accelerators).
UNIT_INSTANCE = frozenset(
    {"GPU", "TPU", "NPU", "HPU", "neuron_cores", "RBLN", "FURIOSA", "MBLT", "TTNPU"}
)
_SCALE = 10_000  # Ray keeps quantities in fixed point to 0.0001; integer units avoid float drift
_GIB = 1024**3
NEW_NODE = -1  # Slot.node of a bundle left for a node an autoscaler has yet to add


@dataclass(frozen=True)
class Slot:
    """Where one bundle lands: a node (index into ActorLayout.nodes) and, for each device
    resource, the devices it draws on."""

    node: int
    devices: tuple[tuple[str, tuple[int, ...]], ...] = ()


@dataclass(frozen=True)
class ActorLayout:
    groups: tuple[tuple[int, ...], ...]  # client ids hosted by each client actor
    actor_request: dict[str, float]
    server_request: dict[str, float]
    capacity: int  # how many client actors the nodes would hold (at most one per client)
    strategy: str = "pack"
    nodes: tuple[str, ...] = ()  # node names, as the slots index them
    node_ids: tuple[str, ...] = ()  # Ray's ids of those nodes, to pin each bundle to its node
    slots: tuple[Slot, ...] = ()  # one per bundle: the server's (if it asks for any), actors'
    has_server: bool = True  # False: the algorithm sends nothing to a server (FedAvg)

    @property
    def num_actors(self) -> int:
        return len(self.groups)

    @property
    def server_bundle(self) -> int | None:
        """The server's bundle index; None when it asks for nothing (it needs no bundle)."""
        return 0 if self.server_request else None

    def actor_bundle(self, i: int) -> int:
        return i + (1 if self.server_request else 0)

    def bundles(self) -> list[dict[str, float]]:
        """The placement group's bundles, in Ray's resource names (memory in bytes)."""
        server = [dict(self.server_request)] if self.server_request else []
        return server + [dict(self.actor_request) for _ in self.groups]

    def describe(self) -> str:
        sizes = sorted({len(g) for g in self.groups})
        per = "-".join(str(s) for s in (sizes[0], sizes[-1])) if len(sizes) > 1 else str(sizes[0])
        used = len({s.node for s in self.slots} - {NEW_NODE})
        waiting = sum(s.node == NEW_NODE for s in self.slots)
        more = f" and {waiting} bundle(s) on nodes yet to be added" if waiting else ""
        server = fmt_request(self.server_request) if self.server_request else "{} (no bundle)"
        server = f"server actor x {server}" if self.has_server else "no server actor"
        return (
            f"{self.num_actors} client actor(s) x {fmt_request(self.actor_request)} "
            f"({per} clients each; room for {self.capacity}), {server}; "
            f"{self.strategy} on {used} of {len(self.nodes)} node(s){more}"
        )

    def bundle_lines(self) -> list[str]:
        """One line per bundle: whose it is, what it reserves, the node it is planned on."""
        lines = []
        for b, (request, slot) in enumerate(zip(self.bundles(), self.slots, strict=True)):
            who = (
                "server" if b == self.server_bundle else f"client actor {b - self.actor_bundle(0)}"
            )
            where = self.nodes[slot.node] if slot.node != NEW_NODE else "a node yet to be added"
            for name, ids in slot.devices:
                where += f" {name} {','.join(str(i) for i in ids)}"
            lines.append(f"bundle {b:>3} {who:<16} {fmt_request(request):<28} -> {where}")
        return lines


def _request(cpus: float, gpus: float | str, memory_gb: float, custom: dict[str, float]) -> dict:
    """In Ray's resource names; memory in bytes, as Ray's node resources report it."""
    if gpus == AUTO:  # the memory layer decides it first (memory/fit.py), above this one
        raise ConfigError(
            "runtime.*_num_gpus=auto reached the actor layout undecided: it is sized from the "
            "memory plan by `fslsage-ray info` and runs; give a number here"
        )
    req = {"CPU": cpus, "GPU": gpus, "memory": memory_gb * _GIB, **custom}
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


def _amount(name: str, value: float) -> str:
    return f"{value / _GIB:g} GiB" if name == "memory" else f"{value:g}"


def fmt_request(request: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {_amount(k, v)}" for k, v in request.items()) + "}"


def fmt_nodes(nodes: Sequence[Mapping[str, float]], names: Sequence[str]) -> str:
    """Node shapes in the resources that matter here, identical nodes counted once."""
    shapes = Counter(fmt_request({k: node.get(k, 0.0) for k in names}) for node in nodes)
    return ", ".join(f"{n} x {shape}" for shape, n in shapes.items()) or "none"


Devices = tuple[tuple[str, tuple[int, ...]], ...]


class _Free:
    """What one node has left, in integer units: scalar resources, and the free share of
    each device of a device resource."""

    def __init__(self, node: Mapping[str, float]) -> None:
        self.scalar = {k: round(v * _SCALE) for k, v in node.items() if k not in UNIT_INSTANCE}
        self.devices = {
            k: [_SCALE] * math.floor(v + 1e-9) for k, v in node.items() if k in UNIT_INSTANCE
        }

    def take(self, request: Mapping[str, float]) -> Devices | None:
        """Reserve `request` here as Ray would: the devices drawn on, or None (and nothing
        taken) if it does not fit."""
        need = {k: round(v * _SCALE) for k, v in request.items()}
        if any(self.scalar.get(k, 0) < n for k, n in need.items() if k not in UNIT_INSTANCE):
            return None
        chosen: dict[str, list[int]] = {}
        for name in UNIT_INSTANCE.intersection(need):
            n, free = need[name], self.devices.get(name, [])
            if n < _SCALE:  # a share: from one device, the fullest that still has room
                fits = [i for i, f in enumerate(free) if f >= n]
                chosen[name] = [min(fits, key=lambda i: free[i])] if fits else []
            else:  # whole free devices (the config refuses 1.5 GPUs, as Ray does)
                chosen[name] = [i for i, f in enumerate(free) if f == _SCALE][: n // _SCALE]
            if len(chosen[name]) < max(1, n // _SCALE):
                return None
        for k, n in need.items():
            if k in UNIT_INSTANCE:
                for i in chosen[k]:
                    self.devices[k][i] -= min(n, _SCALE)
            else:
                self.scalar[k] -= n
        return tuple((k, tuple(ids)) for k, ids in sorted(chosen.items()))


def holds(node: Mapping[str, float], request: Mapping[str, float]) -> bool:
    """Whether an empty node has room for `request`, as Ray would place it."""
    return _Free(node).take(request) is not None


def _fill(
    nodes: Sequence[Mapping[str, float]],
    server: Mapping[str, float],
    actor: Mapping[str, float],
    server_node: int | None,
    limit: int,
    strategy: str,
) -> tuple[Slot | None, list[Slot]]:
    """The server's bundle on `server_node` (None: it has none), then at most `limit` client
    actors' bundles in the order the strategy puts them: pack fills the server's node, then
    the next; spread deals one a node in turn, the server's node last; strict_spread deals
    one a node, none on the server's."""
    free = [_Free(n) for n in nodes]
    order = list(range(len(nodes)))
    server_slot = None
    if server_node is not None:
        server_slot = Slot(server_node, free[server_node].take(server) or ())
        order.remove(server_node)
        order = {"pack": [server_node, *order], "spread": [*order, server_node]}.get(
            strategy, order
        )
    slots: list[Slot] = []
    if strategy == "pack":
        for i in order:
            while len(slots) < limit and (devices := free[i].take(actor)) is not None:
                slots.append(Slot(i, devices))
        return server_slot, slots
    while order and len(slots) < limit:
        for i in list(order):
            devices = free[i].take(actor) if len(slots) < limit else None
            if devices is not None:
                slots.append(Slot(i, devices))
            if devices is None or strategy == "strict_spread":
                order.remove(i)
    return server_slot, slots


def _one_of_each_shape(
    indices: list[int], nodes: Sequence[Mapping[str, float]], names: Sequence[str]
) -> list[int]:
    """Nodes alike in the resources asked for leave the same room: one of each suffices."""
    seen: dict[tuple, int] = {}
    for i in indices:
        seen.setdefault(tuple(nodes[i].get(k, 0.0) for k in names), i)
    return list(seen.values())


def _wanted(runtime: RuntimeConfig, num_clients: int, capacity: int) -> int:
    if runtime.clients_per_actor is not None:
        return math.ceil(num_clients / runtime.clients_per_actor)
    if runtime.num_actors is not None:
        return min(runtime.num_actors, num_clients)
    return capacity


def layout_actors(
    runtime: RuntimeConfig,
    num_clients: int,
    nodes: Sequence[Mapping[str, float]],
    names: Sequence[str] | None = None,
    ids: Sequence[str] = (),
    may_grow: bool = False,
    uses_server: bool = True,
) -> ActorLayout:
    """The server's bundle goes on the node that leaves room for the most client actors;
    then as many client actors as fit (or as asked for), clients split evenly over them.
    `names` (for people) and `ids` (for Ray) of the nodes are carried into the layout. Where
    the cluster `may_grow` (an autoscaler), client actors asked for beyond what the nodes
    hold are planned on no node: their bundles wait for the nodes the autoscaler adds. An
    algorithm that `uses_server` not (FedAvg) gets no server actor, so its runtime.server_*
    request reserves nothing."""
    actor = actor_request(runtime)
    server = server_request(runtime) if uses_server else {}
    strategy = runtime.placement_strategy
    names = tuple(names) if names is not None else tuple(f"node {i}" for i in range(len(nodes)))
    shown = list(dict.fromkeys(["CPU", "GPU", *actor, *server]))
    shapes = fmt_nodes(nodes, shown)
    candidates: list[int | None] = [None]
    if server:
        holding = [i for i, n in enumerate(nodes) if holds(n, server)]
        candidates = _one_of_each_shape(holding, nodes, shown)
        if not candidates:
            raise ConfigError(
                f"the server actor asks for {fmt_request(server)} but no node holds that "
                f"(nodes: {shapes}); lower the runtime.server_* request or add a node"
            )
    best: tuple[Slot | None, list[Slot]] | None = None
    for node in candidates:
        layout = _fill(nodes, server, actor, node, num_clients, strategy)
        if best is None or len(layout[1]) > len(best[1]):
            best = layout
    server_slot, slots = best
    capacity = len(slots)
    wanted = _wanted(runtime, num_clients, capacity)
    if wanted < 1 or (capacity < 1 and not may_grow):
        raise ConfigError(
            f"no client actor fits: each asks for {fmt_request(actor)}, the server for "
            f"{fmt_request(server)}, {strategy} placement, nodes: {shapes}; lower the "
            "runtime.actor_* request or add resources"
        )
    if wanted > capacity and not may_grow:
        raise ConfigError(
            f"{wanted} client actors asked for, but the nodes have room for {capacity} "
            f"(each asks for {fmt_request(actor)}, the server for {fmt_request(server)}, "
            f"{strategy} placement, nodes: {shapes})"
        )
    groups = tuple(tuple(int(c) for c in g) for g in np.array_split(np.arange(num_clients), wanted))
    slots += [Slot(NEW_NODE)] * (wanted - capacity)
    chosen = ([server_slot] if server_slot else []) + slots[:wanted]
    return ActorLayout(
        groups, actor, server, capacity, strategy, names, tuple(ids), tuple(chosen), uses_server
    )
