"""The memory plan of a config as it will run: 'auto' GPU shares decided first, for this
machine or for the cluster a run attaches to (the decision itself is fit.py's, pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from fslsage_ray.config.schema import AUTO, Config
from fslsage_ray.memory.estimate import MemoryPlanner, local_node, memory_planner
from fslsage_ray.memory.fit import Needs, fit_gpus, gpu_sizes
from fslsage_ray.memory.parts import MemoryPlan


def plan_memory(config: Config, groups: Sequence[Sequence[int]] | None = None) -> MemoryPlan:
    """Every actor kind's parts. `groups`: clients per client actor (default: as a local
    Ray on this machine would place them; `info` passes the cluster's plan). GPU shares left
    to the plan (runtime.*_num_gpus=auto) are first fitted to this machine."""
    planner = memory_planner(config)
    if config.runtime.gpus_auto and config.runtime.backend == "ray":
        fitted = fit_local(config, planner)
        planner = planner.with_runtime(fitted.config.runtime)
    return planner.plan(groups)


# --- adapters: the fit for a config, on this machine or on the cluster ----------------------


@dataclass(frozen=True)
class Fitted:
    config: Config  # with the auto shares, client actors and window filled in
    lines: tuple[str, ...]  # each decision with its reason


def planner_needs(planner: MemoryPlanner) -> Needs:
    """The memory plan (MemoryPlanner) at a number of client actors, a window and a batch."""
    m = planner.num_clients

    def needs(actors: int, window: int, batch: int | None) -> tuple:
        groups = [tuple(g) for g in np.array_split(np.arange(m), actors)]
        plan = planner.plan(groups, window, batch)
        server = next((a for a in plan.actors if a.kind == "server actor"), None)
        return plan.actor("client actor"), server

    return needs


def driver_gpu() -> tuple[str, int] | None:
    """The driver's first visible GPU (name, bytes), if torch sees one."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return props.name, int(props.total_memory)


def fit_config(
    config: Config, nodes: Sequence[Mapping[str, float]], planner: MemoryPlanner | None = None
) -> Fitted:
    """The config with its 'auto' GPU shares decided for `nodes` (a no-op without any)."""
    runtime = config.runtime
    if not runtime.gpus_auto:
        return Fitted(config, ())
    if runtime.backend != "ray":  # no actors to share a GPU: runtime.device decides alone
        keys = ("actor_num_gpus", "server_num_gpus")
        shares = {k: 0.0 for k in keys if getattr(runtime, k) == AUTO}
        return Fitted(replace(config, runtime=replace(runtime, **shares)), ())
    from fslsage_ray.algorithms.registry import get_algorithm

    planner = planner or memory_planner(config)
    need_driver = runtime.gpu_memory_gb is None and any(n.get("GPU", 0) >= 1 for n in nodes)
    sizes = gpu_sizes(nodes, runtime.gpu_memory_gb, driver_gpu() if need_driver else None)
    fit = fit_gpus(
        runtime,
        config.algorithm.num_clients,
        nodes,
        sizes,
        planner_needs(planner),
        get_algorithm(config).uses_server,
        config.algorithm.batch_size,
    )
    return Fitted(replace(config, runtime=fit.apply(runtime)), fit.lines)


def fit_local(config: Config, planner: MemoryPlanner | None = None) -> Fitted:
    return fit_config(config, [local_node(config.runtime)], planner)


def fit_to_cluster(config: Config) -> Fitted:
    """For a run: the named cluster's alive nodes (attaching to it), else this machine's.
    A private local Ray is not started here: the backend starts (and ends) its own."""
    from fslsage_ray.runtime.cluster import alive_nodes, cluster_address, connect

    if not config.runtime.gpus_auto or config.runtime.backend != "ray":
        return fit_config(config, ())
    if cluster_address(config.runtime) is None:
        return fit_local(config)
    connect(config.runtime)
    return fit_config(config, [n.resources for n in alive_nodes()])


class ClusterMemory:
    """What `fslsage-ray info` adds to its cluster report (runtime/cluster_info.py takes
    these as callbacks, memory sitting above runtime): the GPU fit for the nodes it read,
    then the memory plan of the layout it made; the model is probed once for both."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.planner: MemoryPlanner | None = None

    def _planner(self, config: Config) -> MemoryPlanner:
        if self.planner is None:
            self.planner = memory_planner(config)
        return self.planner.with_runtime(config.runtime)

    def fit(self, nodes: Sequence[Mapping[str, float]]) -> tuple[Config, tuple[str, ...]]:
        if not self.config.runtime.gpus_auto:
            return self.config, ()
        fitted = fit_config(self.config, nodes, self._planner(self.config))
        return fitted.config, fitted.lines

    def lines(self, config: Config, groups: Sequence[Sequence[int]]) -> list[str]:
        return [f"memory: {line}" for line in self._planner(config).plan(groups).lines()]
