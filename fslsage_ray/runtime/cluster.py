"""Starting or attaching to Ray, safely by default.

A private local Ray started here listens on 127.0.0.1 only, has no dashboard unless asked,
and sends no usage statistics. An existing cluster is used only when named (runtime.address
or RAY_ADDRESS), and then Ray's local-only switch is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from fslsage_ray.config.schema import RuntimeConfig
from fslsage_ray.notebook import in_kernel

# Ray 2.60 warns on every private start that it turned token authentication on, and how to
# opt out; it stays on, so the line says nothing to act on (a notebook shows it in red).
_TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"
_TOKEN_NOTICE = "Token authentication is enabled for this Ray cluster"


def _loopback_only() -> None:
    """Ray's local-only switch: every address becomes 127.0.0.1.

    Ray reads the variable once, at import, so setting it now is not enough for this
    process: the constant it was read into is switched off too. The variable itself is
    kept for the processes Ray starts.
    """
    import ray._private.ray_constants as ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def cluster_address(runtime: RuntimeConfig) -> str | None:
    return runtime.address or os.environ.get("RAY_ADDRESS") or None


def connect(runtime: RuntimeConfig) -> bool:
    """Make sure Ray is initialised; returns True when this call started a private Ray."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    from fslsage_ray.runtime import tensor_wire

    if ray.is_initialized():
        tensor_wire.register()
        return False
    address = cluster_address(runtime)
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        tensor_wire.register()
        return False
    _loopback_only()
    with _without_token_notice():
        ray.init(
            address="local",  # a private instance, even when `ray start` left one running here
            num_cpus=runtime.local_num_cpus if runtime.local_num_cpus else (os.cpu_count() or 1),
            num_gpus=runtime.local_num_gpus,
            include_dashboard=runtime.dashboard,
            dashboard_host="127.0.0.1",
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    tensor_wire.register()
    return True


def shutdown_private(started: bool) -> None:
    """End the private Ray this process started, except in a Jupyter kernel: there it serves
    the session's next run too (a stop or error ends that run's actors, never Ray)."""
    import ray

    if started and not in_kernel() and ray.is_initialized():
        ray.shutdown()


@contextlib.contextmanager
def _without_token_notice() -> Iterator[None]:
    """Drop only Ray's notice that token authentication is on; authentication is untouched,
    and every other warning (token auth off, for one) still shows."""

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_TOKEN_NOTICE)

    logger = logging.getLogger(_TOKEN_LOGGER)
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


# What a reserved bundle adds to its node's resources (CPU_group_<pg id>, bundle_group_1_<id>):
# not capacity of the node, so never planned with.
_BUNDLE_RESOURCE = re.compile(r"_group_(\d+_)?[0-9a-f]{36}$")


@dataclass(frozen=True)
class NodeShape:
    name: str  # address/short node id, "(head)" marked: what a person reads in a plan
    node_id: str
    resources: dict[str, float]


def alive_nodes() -> list[NodeShape]:
    """The alive nodes, head first, each with its total resources (what Ray places on)."""
    import ray

    nodes = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        resources = {
            k: float(v) for k, v in node["Resources"].items() if not _BUNDLE_RESOURCE.search(k)
        }
        head = " (head)" if "node:__internal_head__" in resources else ""
        name = f"{node['NodeManagerAddress']}/{node['NodeID'][:8]}{head}"
        nodes.append(NodeShape(name, node["NodeID"], resources))
    return sorted(nodes, key=lambda n: not n.name.endswith("(head)"))


def autoscales() -> bool:
    """Whether an autoscaler has told Ray about node types it may add (its cluster config in
    the GCS): then a placement group larger than the nodes now up waits for new nodes."""
    from ray._private.state import state  # no public API reads the autoscaler's config

    try:
        config = state.get_cluster_config()
    except Exception:  # an older or newer Ray without it: plan on the nodes that are up
        return False
    return bool(config and any(group.max_count != 0 for group in config.node_group_configs))
