"""A layout's bundles reserved on Ray as one placement group, before any actor starts.

The group holds the server's bundle and one per client actor, each pinned to the node the
layout chose for it (by the node-id label Ray gives every node); each actor is then scheduled
into its own bundle. Ray places a group whole or not at all, so a layout the cluster cannot
hold now (resources held by other work, a node gone) is refused after
runtime.placement_timeout_s, never left half started. On an autoscaling cluster the pending
group is what asks for new nodes: give it a long timeout.
"""

from __future__ import annotations

import ray
import ray.exceptions
from ray.util.placement_group import (
    PlacementGroup,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from fslsage_ray.config.schema import ConfigError, RuntimeConfig
from fslsage_ray.runtime.cluster import alive_nodes, autoscales
from fslsage_ray.runtime.placement import ActorLayout, fmt_nodes, layout_actors

NODE_ID_LABEL = "ray.io/node-id"  # a default label of every Ray node (Ray >= 2.49)


def layout_on_cluster(
    runtime: RuntimeConfig, num_clients: int, uses_server: bool = True
) -> ActorLayout:
    """The layout for the nodes alive now, and for nodes an autoscaler may add (Ray must be
    initialised)."""
    nodes = alive_nodes()
    return layout_actors(
        runtime,
        num_clients,
        [n.resources for n in nodes],
        [n.name for n in nodes],
        [n.node_id for n in nodes],
        may_grow=autoscales(),
        uses_server=uses_server,
    )


def reserve(layout: ActorLayout, timeout_s: float) -> PlacementGroup:
    """Create the layout's placement group, each bundle pinned to its chosen node, and wait
    until Ray has placed every bundle."""
    pins = None
    if layout.node_ids:  # a bundle for a node yet to be added is left free for the autoscaler
        ids = layout.node_ids
        pins = [{NODE_ID_LABEL: ids[s.node]} if s.node >= 0 else {} for s in layout.slots]
    group = placement_group(
        layout.bundles(), strategy=layout.strategy.upper(), bundle_label_selector=pins
    )
    ready, _ = ray.wait([group.ready()], timeout=timeout_s)
    if not ready:
        remove_placement_group(group)
        names = list(dict.fromkeys(["CPU", "GPU", *layout.actor_request, *layout.server_request]))
        shapes = fmt_nodes([n.resources for n in alive_nodes()], names)
        raise ConfigError(
            f"Ray did not place {len(layout.bundles())} bundles ({layout.describe()}) within "
            f"{timeout_s:g}s on nodes {shapes}: other work may hold the resources; on an "
            "autoscaling cluster raise runtime.placement_timeout_s"
        )
    return group


def in_bundle(group: PlacementGroup, index: int) -> dict:
    """Actor options that schedule it into bundle `index` of the group."""
    return {
        "scheduling_strategy": PlacementGroupSchedulingStrategy(
            placement_group=group, placement_group_bundle_index=index
        )
    }


def bundle_nodes(group: PlacementGroup) -> list[str]:
    """The node name each bundle landed on, as Ray reports it (for a bundle the layout left
    to a new node, the node that came)."""
    names = {n.node_id: n.name for n in alive_nodes()}
    placed = placement_group_table(group)["bundles_to_node_id"]
    return [names.get(placed[i], placed[i][:8]) for i in sorted(placed)]


def release(group: PlacementGroup | None) -> None:
    """Remove the group (Ray ends any actor still in it); safe on a group already gone."""
    if group is None:
        return
    try:
        remove_placement_group(group)
    except ray.exceptions.RayError:
        pass
