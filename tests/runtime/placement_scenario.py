"""Run as a script by test_placement.py: what Ray really places on a two-node loopback cluster
with fake GPUs, next to what the planner said. Prints one JSON line.

Nodes: the head has 2 CPUs and 1 GPU, the other node 2 CPUs and 3 GPUs (4 GPUs in all).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import time

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402
from ray.util.placement_group import placement_group, remove_placement_group  # noqa: E402

from fslsage_ray.cli import main as cli_main  # noqa: E402
from fslsage_ray.config import ConfigError, RuntimeConfig  # noqa: E402
from fslsage_ray.runtime.cluster import alive_nodes  # noqa: E402
from fslsage_ray.runtime.placement import layout_actors  # noqa: E402
from fslsage_ray.runtime.reservation import (  # noqa: E402
    bundle_nodes,
    in_bundle,
    layout_on_cluster,
    release,
    reserve,
)

SMALL = {"actor_num_cpus": 0.1, "server_num_cpus": 0.1}


@ray.remote(num_cpus=0)
class Probe:
    def where(self) -> list:
        return [ray.get_runtime_context().get_node_id(), [str(g) for g in ray.get_gpu_ids()]]


def _probe(group, index: int, request: dict) -> ray.actor.ActorHandle:
    return Probe.options(
        num_cpus=request.get("CPU", 0), num_gpus=request.get("GPU", 0), **in_bundle(group, index)
    ).remote()


def _refusal(**kw) -> dict:
    start = time.monotonic()
    try:
        layout_on_cluster(RuntimeConfig(**kw), 100)
    except ConfigError as exc:
        return {"error": str(exc), "seconds": time.monotonic() - start}
    return {"error": None}


def _places(bundles: list[dict], wait_s: float = 3.0) -> bool:
    """Whether Ray itself places these bundles (PACK) within wait_s."""
    group = placement_group(bundles, strategy="PACK")
    ready, _ = ray.wait([group.ready()], timeout=wait_s)
    remove_placement_group(group)
    return bool(ready)


def gpu_share(label: dict) -> dict:
    """0.3 GPU each: the layout, the GPUs real actors in the bundles get, a 13th refused."""
    layout = layout_on_cluster(RuntimeConfig(actor_num_gpus=0.3, **SMALL), 100)
    group = reserve(layout, 60)
    probes = [
        _probe(group, layout.actor_bundle(i), layout.actor_request)
        for i in range(layout.num_actors)
    ]
    seen = ray.get([p.where.remote() for p in probes], timeout=180)
    release(group)
    per_gpu: dict[str, int] = {}
    for node, gpus in seen:
        for g in gpus:
            per_gpu[f"{label[node]}:{g}"] = per_gpu.get(f"{label[node]}:{g}", 0) + 1
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(
            [
                "info",
                "algorithm.num_clients=100",
                "runtime.actor_num_gpus=0.3",
                *(f"runtime.{k}={v}" for k, v in SMALL.items()),
            ]
        )
    return {
        "planned": layout.num_actors,
        "per_gpu": per_gpu,
        "thirteen_placed": _places([{"CPU": 0.1, "GPU": 0.3}] * 13 + [{"CPU": 0.1}]),
        "forced_13": _refusal(actor_num_gpus=0.3, num_actors=13, **SMALL),
        "info_code": code,
        "info": out.getvalue(),
    }


def too_big() -> dict:
    """3 CPUs each on two 2-CPU nodes: refused at once, and Ray agrees it cannot place one."""
    return {"refusal": _refusal(actor_num_cpus=3), "ray_places": _places([{"CPU": 3}], 2.0)}


def mixed(label: dict) -> dict:
    """A server asking for 2 whole GPUs fits only on the 3-GPU node."""
    layout = layout_on_cluster(RuntimeConfig(server_num_gpus=2, actor_num_gpus=0.5, **SMALL), 100)
    group = reserve(layout, 60)
    placed = bundle_nodes(group)
    node, gpus = ray.get(_probe(group, 0, layout.server_request).where.remote(), timeout=120)
    release(group)
    return {
        "planned": layout.num_actors,
        "server_node": label[node],
        "server_gpus": gpus,
        "server_bundle_on_head": placed[0].endswith("(head)"),
    }


def strategies() -> dict:
    """Two 1-CPU client actors (the server asks for nothing): spread puts one on each node,
    pack both on one; strict_spread cannot also give the server a node of its own."""
    nodes = {}
    for strategy in ("spread", "pack"):
        rt = RuntimeConfig(
            num_actors=2, actor_num_cpus=1, server_num_cpus=0, placement_strategy=strategy
        )
        group = reserve(layout_on_cluster(rt, 10), 60)
        nodes[strategy] = len(set(bundle_nodes(group)))
        release(group)
    strict = _refusal(
        num_actors=2, actor_num_cpus=1, server_num_cpus=1, placement_strategy="strict_spread"
    )
    return {"nodes_used": nodes, "strict": strict}


def held_elsewhere() -> dict:
    """Other work holds the 3-GPU node's GPUs: the reservation is refused after its timeout."""
    hold = placement_group([{"GPU": 3}])
    ray.get(hold.ready(), timeout=60)
    layout = layout_on_cluster(RuntimeConfig(actor_num_gpus=0.3, **SMALL), 100)
    start = time.monotonic()
    try:
        reserve(layout, 2.0)
        error = None
    except ConfigError as exc:
        error = str(exc)
    seconds = time.monotonic() - start
    remove_placement_group(hold)
    return {"error": error, "seconds": seconds}


def grows(cluster: Cluster) -> dict:
    """Bundles planned for a node yet to come (as on an autoscaling cluster) are pinned to
    none: the group waits, and is placed once a node joins."""
    rt = RuntimeConfig(num_actors=2, actor_num_cpus=2, server_num_cpus=0.1)
    nodes = alive_nodes()
    layout = layout_actors(
        rt,
        10,
        [n.resources for n in nodes],
        [n.name for n in nodes],
        [n.node_id for n in nodes],
        may_grow=True,
    )
    outcome: dict = {}

    def wait() -> None:
        start = time.monotonic()
        try:
            group = reserve(layout, 120)
        except ConfigError as exc:
            outcome["error"] = str(exc)
            return
        outcome["seconds"] = time.monotonic() - start
        outcome["nodes"] = len(set(bundle_nodes(group)))
        release(group)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(2.0)
    outcome["waiting_before_join"] = waiter.is_alive()
    cluster.add_node(num_cpus=2)
    waiter.join(timeout=150)
    return {"slots": [s.node for s in layout.slots], **outcome}


def main() -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1})
    other = cluster.add_node(num_cpus=2, num_gpus=3)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        label = {
            n["NodeID"]: "other" if n["NodeID"] == other.node_id else "head" for n in ray.nodes()
        }
        result = {
            "gpu_share": gpu_share(label),
            "too_big": too_big(),
            "mixed": mixed(label),
            "strategies": strategies(),
            "held_elsewhere": held_elsewhere(),
            "grows": grows(cluster),  # last: it adds a node
        }
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
