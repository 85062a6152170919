"""GPU shares sized from the memory plan: runtime.actor_num_gpus=auto and server_num_gpus=auto.

Ray hands out GPUs by count, never by memory: a share s lets floor(1/s) actors onto one GPU
and nothing stops them using more than their part of it. So a share is sized for memory: the
actors it packs on one GPU, each with its planned tensors (ActorMemory.gpu_total) and its own
CUDA context, must fit in the GPU's memory less a headroom. Then the client actors' count and
the in-flight window are chosen so that this holds: the most client actors the nodes hold at
the share their hosted clients need, with the configured window, else a smaller window; a
layout that cannot fit at window 1 is refused before any work, in one line naming the parts
that do not fit and what would.

The figures (stated, not measured here: no GPU was lent to this project when they were set):
- HEADROOM, 10% of the GPU: the plan counts the bytes torch's caching allocator hands out
  (max_memory_allocated); the allocator reserves more (blocks rounded up, 2 MiB and 20 MiB
  segments it keeps after a free, fragmentation between them), and cuBLAS/cuDNN take
  workspaces outside it. PyTorch's own guidance is that reserved memory runs some percent
  above allocated; 10% also covers the plan's error, within 25% of measured per part on CPU
  but much less on an actor's whole peak (benchmarks/RESULTS.md).
- CUDA_CONTEXT, 512 MiB per process: every actor that touches CUDA creates its own context
  (the driver's state and torch's kernels; with CUDA's lazy module loading, the default
  since CUDA 11.7, 300-500 MiB on recent GPUs). Rounded up to a power of two.

Pure where it decides (`fit_gpus`: node resource dicts, GPU sizes and a needs function in,
shares, actors and window out); the adapters below it plan with MemoryPlanner and read the
cluster.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from fslsage_ray.config.schema import AUTO, ConfigError, RuntimeConfig
from fslsage_ray.memory.parts import MIB, RESIDENT, ActorMemory
from fslsage_ray.runtime.placement import holds, layout_actors, server_request

GIB = 2**30
HEADROOM = 0.10
CUDA_CONTEXT = 512 * MIB
SHARE_STEPS = 100  # shares are whole hundredths of a GPU: at most 100 actors a GPU

# GiB of the smallest variant of each GPU Ray names in its `accelerator_type:<name>` node
# resource, as torch reports total_memory (nvidia-smi's MiB / 1024, rounded down). Ray
# reports "A100" for both the 40 and 80 GB cards, and "H100" for the 80 and 94 GB ones: the
# smaller is taken, so a share is never too small. runtime.gpu_memory_gb overrides it.
GPU_GIB_BY_TYPE = {
    "T4": 14.7,
    "V100": 15.7,
    "P100": 11.9,
    "A10G": 22.0,
    "L4": 22.0,
    "L40S": 44.9,
    "A100": 39.4,
    "A100-40G": 39.4,
    "A100-80G": 79.1,
    "H100": 79.1,
    "H200": 139.8,
}
_TYPE_PREFIX = "accelerator_type:"

# actors, window, batch (None: the configured one) -> (client actor, server actor or None)
Needs = Callable[[int, int, int | None], tuple[ActorMemory, ActorMemory | None]]


@dataclass(frozen=True)
class GpuSize:
    nbytes: int
    source: str  # where the figure came from, for the decision lines


@dataclass(frozen=True)
class GpuFit:
    """What the fit chose, each with the reason `lines` gives."""

    actor_gpus: float
    server_gpus: float
    num_actors: int | None  # None: left to the layout (no GPU share to size, or as asked)
    window: int
    lines: tuple[str, ...]

    def apply(self, runtime: RuntimeConfig) -> RuntimeConfig:
        return replace(
            runtime,
            actor_num_gpus=self.actor_gpus,
            server_num_gpus=self.server_gpus,
            num_actors=self.num_actors if self.num_actors is not None else runtime.num_actors,
            max_inflight_uploads=self.window,
        )


def node_accelerator(node: Mapping[str, float]) -> str | None:
    return next((k[len(_TYPE_PREFIX) :] for k in node if k.startswith(_TYPE_PREFIX)), None)


def gpu_sizes(
    nodes: Sequence[Mapping[str, float]],
    gpu_memory_gb: float | None,
    driver_gpu: tuple[str, int] | None = None,
) -> list[GpuSize | None]:
    """One GPU's memory on each node (None: no GPU there, or not known). In order: the
    user's runtime.gpu_memory_gb; the driver's own GPU (name, bytes) on nodes of its type or
    of no reported type; the table of Ray's accelerator types."""
    out: list[GpuSize | None] = []
    for node in nodes:
        kind = node_accelerator(node)
        if node.get("GPU", 0.0) < 1:
            out.append(None)
        elif gpu_memory_gb is not None:
            out.append(GpuSize(int(gpu_memory_gb * GIB), "runtime.gpu_memory_gb"))
        elif driver_gpu is not None and (kind is None or kind in driver_gpu[0]):
            out.append(GpuSize(driver_gpu[1], f"the driver's GPU ({driver_gpu[0]})"))
        elif kind in GPU_GIB_BY_TYPE:
            out.append(GpuSize(int(GPU_GIB_BY_TYPE[kind] * GIB), f"Ray's accelerator type {kind}"))
        else:
            out.append(None)
    return out


def _gib(nbytes: float) -> str:
    """A size as a person reads it: GiB, or MiB below one GiB (small models plan MiB)."""
    return f"{nbytes / GIB:.1f} GiB" if nbytes >= GIB else f"{nbytes / MIB:.1f} MiB"


def _largest_parts(actor: ActorMemory, count: int = 3) -> str:
    """The GPU parts held at the actor's GPU peak, largest first, in GiB."""
    phase = actor.peak_phase(True)
    held = [p for p in actor.parts if p.on_device and p.nbytes and p.phase in (RESIDENT, phase)]
    held.sort(key=lambda p: -p.nbytes)
    return ", ".join(f"{p.name.split(':')[0]} {_gib(p.nbytes)}" for p in held[:count])


class _Search:
    """The fit's arithmetic for one cluster: shares from bytes, and how many client actors
    the nodes hold at a share (memoised: a search asks for few distinct ones)."""

    def __init__(
        self,
        runtime: RuntimeConfig,
        num_clients: int,
        nodes: Sequence[Mapping[str, float]],
        gpu: int,
        needs: Needs,
        uses_server: bool,
    ) -> None:
        self.runtime, self.m, self.nodes, self.needs = runtime, num_clients, nodes, needs
        self.uses_server = uses_server
        self.usable = int(gpu * (1 - HEADROOM))
        self._capacity: dict[tuple[float, float], int] = {}
        self._client: dict[tuple[int, int, int | None], ActorMemory] = {}

    def share(self, tensor_bytes: int) -> float | None:
        """The share of one GPU an actor planning `tensor_bytes` needs; None: over one GPU."""
        steps = math.ceil((tensor_bytes + CUDA_CONTEXT) * SHARE_STEPS / self.usable)
        return steps / SHARE_STEPS if steps <= SHARE_STEPS else None

    def client(self, actors: int, window: int, batch: int | None = None) -> ActorMemory:
        """The client actor's plan; its GPU part depends on clients hosted, not on actors."""
        key = (math.ceil(self.m / actors), window, batch)
        if key not in self._client:
            self._client[key] = self.needs(actors, window, batch)[0]
        return self._client[key]

    def capacity(self, actor_gpus: float, server_gpus: float) -> int:
        key = (actor_gpus, server_gpus)
        if key not in self._capacity:
            runtime = replace(
                self.runtime,
                actor_num_gpus=actor_gpus,
                server_num_gpus=server_gpus,
                num_actors=None,
                clients_per_actor=None,
            )
            try:
                layout = layout_actors(runtime, self.m, self.nodes, uses_server=self.uses_server)
                self._capacity[key] = layout.capacity
            except ConfigError:  # no client actor fits beside the server
                self._capacity[key] = 0
        return self._capacity[key]

    def fits(
        self, actors: int, window: int, server_gpus: float, batch: int | None = None
    ) -> float | None:
        """The client share at which `actors` client actors fit, or None."""
        share = self.share(self.client(actors, window, batch).gpu_total)
        if share is None or self.capacity(share, server_gpus) < actors:
            return None
        return share


def _actor_counts(runtime: RuntimeConfig, m: int) -> list[int]:
    """Client actor counts to try, most first: as asked, or any up to one per client."""
    if runtime.clients_per_actor is not None:
        return [math.ceil(m / runtime.clients_per_actor)]
    if runtime.num_actors is not None:
        return [min(runtime.num_actors, m)]
    return list(range(m, 0, -1))


def fit_gpus(
    runtime: RuntimeConfig,
    num_clients: int,
    nodes: Sequence[Mapping[str, float]],
    sizes: Sequence[GpuSize | None],
    needs: Needs,
    uses_server: bool = True,
    batch_size: int | None = None,
) -> GpuFit:
    """Shares, client actors and window for `nodes` (Ray's resource dicts), or a ConfigError
    in one line. `sizes`: one GPU's memory per node (gpu_sizes); `needs`: the memory plan at
    a number of client actors, a window and a batch; `batch_size`: the configured batch, from
    which a refusal suggests a smaller one."""
    actor_auto = runtime.actor_num_gpus == AUTO
    server_auto = runtime.server_num_gpus == AUTO
    window = runtime.max_inflight_uploads
    gpu_nodes = [i for i, n in enumerate(nodes) if n.get("GPU", 0.0) >= 1]
    if not gpu_nodes:
        if actor_auto and runtime.actor_num_cpus <= 0:
            raise ConfigError(
                "runtime.actor_num_gpus=auto: no node has a GPU, and runtime.actor_num_cpus=0 "
                "leaves a client actor nothing to compute on; give it CPUs or add a GPU node"
            )
        return GpuFit(
            0.0 if actor_auto else float(runtime.actor_num_gpus),
            0.0 if server_auto else float(runtime.server_num_gpus),
            None,
            window,
            ("gpu: no node has a GPU, so the 'auto' shares are 0: every actor computes on CPU",),
        )
    unknown = [i for i in gpu_nodes if sizes[i] is None]
    if unknown:
        kind = node_accelerator(nodes[unknown[0]])
        said = f"accelerator type {kind}, not in the table" if kind else "no accelerator type"
        raise ConfigError(
            f"runtime.*_num_gpus=auto: the memory of node {unknown[0]}'s GPUs is not known "
            f"(Ray reports {said}, and the driver sees no GPU of that kind); set "
            "runtime.gpu_memory_gb to one GPU's GiB"
        )
    smallest = min((sizes[i] for i in gpu_nodes), key=lambda s: s.nbytes)
    search = _Search(runtime, num_clients, nodes, smallest.nbytes, needs, uses_server)
    lines = [
        f"gpu memory: {_gib(smallest.nbytes)} a GPU (the smallest of {len(gpu_nodes)} GPU "
        f"node(s)), from {smallest.source}; shares are sized to {_gib(search.usable)} of it "
        f"({HEADROOM:.0%} headroom for the caching allocator's reserve and cuBLAS/cuDNN "
        f"workspaces, which the plan's tensor bytes leave out) with a {CUDA_CONTEXT // MIB} "
        "MiB CUDA context per actor"
    ]
    counts = _actor_counts(runtime, num_clients)
    server_gpus = float(runtime.server_num_gpus) if not server_auto else 0.0
    if uses_server and server_auto:
        server = needs(counts[-1], window, None)[1]
        if server is not None:
            share = search.share(server.gpu_total)
            if share is None:
                raise ConfigError(
                    f"the server actor needs {_gib(server.gpu_total)} on its GPU "
                    f"({_largest_parts(server)}) + {CUDA_CONTEXT // MIB} MiB CUDA context, but "
                    f"one GPU has {_gib(smallest.nbytes)} ({_gib(search.usable)} usable); "
                    + _server_advice(search, batch_size)
                )
            server_gpus = share
            request = server_request(replace(runtime, server_num_gpus=share))
            if not any(holds(n, request) for n in nodes):
                raise ConfigError(
                    f"the server actor needs {share:g} GPU ({_gib(server.gpu_total)} of tensors "
                    "+ CUDA context) but no node holds its request with that; lower the "
                    "runtime.server_* request or add a node"
                )
            lines.append(
                f"server actor: {share:g} GPU (runtime.server_num_gpus=auto): it plans "
                f"{_gib(server.gpu_total)} of tensors at its peak ({_largest_parts(server)}) + "
                "the CUDA context"
            )
    elif server_auto:
        lines.append("server actor: none (the algorithm sends nothing to a server), no GPU")
    if not actor_auto:
        return GpuFit(float(runtime.actor_num_gpus), server_gpus, None, window, tuple(lines))
    for w in range(window, 0, -1):
        for actors in counts:
            share = search.fits(actors, w, server_gpus)
            if share is None:
                continue
            client = search.client(actors, w)
            lines += _client_lines(runtime, actors, share, client, search, w, server_gpus)
            chosen = actors if len(counts) > 1 else None
            return GpuFit(share, server_gpus, chosen, w, tuple(lines))
    raise ConfigError(_refusal(runtime, search, counts, server_gpus, smallest, batch_size))


def _client_lines(
    runtime: RuntimeConfig,
    actors: int,
    share: float,
    client: ActorMemory,
    search: _Search,
    window: int,
    server_gpus: float,
) -> list[str]:
    """The client actors' share, count and window, each with its reason."""
    m = search.m
    hosted = math.ceil(m / actors)
    if runtime.clients_per_actor is not None or runtime.num_actors is not None:
        why = "as runtime.num_actors / clients_per_actor ask"
    elif actors == m:
        why = "one a client, the most there can be"
    else:
        more = search.client(actors + 1, window)
        over = search.share(more.gpu_total)
        why = (
            f"the most the nodes hold at their share (at {actors + 1}: "
            + (
                f"{over:g} GPU each, room for {search.capacity(over, server_gpus)}"
                if over
                else "over a GPU"
            )
            + "); fixed for the run, as runtime.num_actors would be"
        )
    kept = runtime.max_inflight_uploads
    window_why = (
        f"runtime.max_inflight_uploads={kept} kept"
        if window == kept
        else f"lowered from runtime.max_inflight_uploads={kept}: at {window + 1} no layout fits "
        f"(a client actor would plan {_gib(search.client(actors, window + 1).gpu_total)})"
    )
    return [
        f"client actor: {share:g} GPU each (runtime.actor_num_gpus=auto), "
        f"{int(1 / share + 1e-9)} a GPU: it plans {_gib(client.gpu_total)} of tensors at its "
        f"peak with up to {hosted} clients ({_largest_parts(client)}) + the CUDA context",
        f"client actors: {actors}, up to {hosted} clients each: {why}",
        f"in-flight window: {window} ({window_why}); results do not depend on it",
    ]


def _smaller_batch(
    search: _Search, counts: list[int], server_gpus: float, batch: int | None
) -> int:
    """The largest halving of the batch at which some client actor count fits at window 1
    (0: none does)."""
    b = (batch or 0) // 2
    while b >= 1 and all(search.fits(a, 1, server_gpus, b) is None for a in counts):
        b //= 2
    return b


def _server_advice(search: _Search, batch: int | None) -> str:
    if CUDA_CONTEXT >= search.usable:
        return "the CUDA context alone takes all of it: use a larger GPU"
    b = (batch or 0) // 2
    while b >= 1:
        server = search.needs(1, 1, b)[1]
        if server is not None and search.share(server.gpu_total) is not None:
            return f"try algorithm.batch_size<={b}, or a larger GPU"
        b //= 2
    return "the server's model state alone does not fit: use a larger GPU"


def _refusal(
    runtime: RuntimeConfig,
    search: _Search,
    counts: list[int],
    server_gpus: float,
    gpu: GpuSize,
    batch: int | None,
) -> str:
    """One line: the smallest client actor tried, what does not fit, and what would."""
    actors = counts[0]
    client = search.client(actors, 1)
    hosted = math.ceil(search.m / actors)
    share = search.share(client.gpu_total)
    if share is None:
        what = (
            f"a client actor with {hosted} client(s) at window 1 needs "
            f"{_gib(client.gpu_total)} on its GPU ({_largest_parts(client)}) + "
            f"{CUDA_CONTEXT // MIB} MiB CUDA context, but one GPU has {_gib(gpu.nbytes)} "
            f"({_gib(search.usable)} usable)"
        )
    else:
        room = search.capacity(share, server_gpus)
        fewer = " (nor any fewer, hosting more clients each)" if len(counts) > 1 else ""
        what = (
            f"{actors} client actor(s) of {share:g} GPU ({_gib(client.gpu_total)} of tensors + "
            f"CUDA context each, window 1) do not fit{fewer}: the nodes hold {room} beside the "
            f"server's {server_gpus:g} GPU"
        )
    tries = []
    b = _smaller_batch(search, counts, server_gpus, batch)
    if b:
        tries.append(f"algorithm.batch_size<={b}")
    if runtime.num_actors is not None or runtime.clients_per_actor is not None:
        tries.append("leaving runtime.num_actors and clients_per_actor unset")
    if runtime.client_state_budget_gb is None and hosted > 1:
        tries.append("runtime.client_state_budget_gb (idle clients' state off the actor)")
    tries.append("more or larger GPUs")
    return f"{what}; try {', or '.join(tries)}"
