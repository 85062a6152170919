"""What `fslsage-ray info` shows about a Ray cluster: its nodes, and where a config's actors
and placement group would go on it, without training. It lives here, not in the command
line, because it connects to Ray (only `runtime/` imports Ray)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from fslsage_ray.config.schema import Config

Fit = Callable[[list[dict[str, float]]], tuple[Config, Iterable[str]]]


def cluster_lines(
    config: Config,
    about_groups: Callable[[Config, list[list[int]]], Iterable[str]] | None = None,
    fit: Fit | None = None,
) -> Iterator[str]:
    """Connect (a private local Ray unless one is named), then yield the report line by line,
    so what is known is printed before an impossible request stops it; a private Ray started
    here is shut down at the end. `fit` decides what the config leaves to the memory plan
    (runtime.*_num_gpus=auto) for the nodes read, with a line per decision; `about_groups`
    adds lines on the planned client groups (the memory plan). Both sit above this layer, so
    they are passed in, not imported."""
    import ray

    from fslsage_ray.algorithms.registry import get_algorithm
    from fslsage_ray.runtime.cluster import alive_nodes, cluster_address, connect
    from fslsage_ray.runtime.layout import explain_layout
    from fslsage_ray.runtime.placement import layout_actors

    started = connect(config.runtime)
    try:
        nodes = alive_nodes()
        where = cluster_address(config.runtime) or "private local Ray on 127.0.0.1"
        yield f"ray cluster: {where}, {len(nodes)} node(s)"
        for node in nodes:
            yield f"  {node.name}: {resources_line(node.resources)}"
        if fit is not None:
            config, decided = fit([n.resources for n in nodes])
            for line in decided:
                yield f"gpu fit: {line}"
        runtime = config.runtime
        uses_server = get_algorithm(config).uses_server
        layout = layout_actors(
            runtime,
            config.algorithm.num_clients,
            [n.resources for n in nodes],
            [n.name for n in nodes],
            uses_server=uses_server,
        )
        yield f"actor layout: {layout.describe()}"
        for line in explain_layout(config.runtime, layout.server_request, uses_server):
            yield f"layout: {line}"
        yield (
            f"placement group ({runtime.placement_strategy}, reserved before training, "
            f"{runtime.placement_timeout_s:g}s to place it), planned:"
        )
        for line in layout.bundle_lines():
            yield f"  {line}"
        for i, group in enumerate(layout.groups):
            yield f"  client actor {i}: clients {group[0]}..{group[-1]} ({len(group)})"
        if about_groups is not None:
            yield from about_groups(config, layout.groups)
    finally:
        if started:
            ray.shutdown()


def resources_line(resources: dict[str, float]) -> str:
    """A node's resources as a person reads them: memory in GiB, Ray's own names left out."""
    shown = {k: v for k, v in sorted(resources.items()) if not k.startswith(("node:", "accel"))}
    return ", ".join(
        f"{k}={v / 2**30:.1f}GiB" if "memory" in k else f"{k}={v:g}" for k, v in shown.items()
    )
