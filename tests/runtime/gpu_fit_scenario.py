"""Run as a script by tests/test_memory_fit.py: 'auto' GPU shares on a loopback Ray cluster
whose nodes declare GPUs they do not have (a 2-CPU head without GPUs, a 2-CPU node with 2),
each GPU said to hold runtime.gpu_memory_gb. Prints one JSON line: what `info` printed, the
fitted layout, and the GPUs real actors in its reserved bundles were given; then what `info`
prints for a layout that cannot fit."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from fslsage_ray.cli import main as cli_main  # noqa: E402
from fslsage_ray.config import load_config  # noqa: E402
from fslsage_ray.memory.auto import fit_to_cluster  # noqa: E402
from fslsage_ray.memory.estimate import MemoryPlanner  # noqa: E402
from fslsage_ray.runtime.reservation import in_bundle, layout_on_cluster, release, reserve  # noqa: E402

OVERRIDES = [
    "algorithm.num_clients=12",
    "data.train_subset=600",
    "data.test_subset=120",
    "runtime.actor_num_gpus=auto",
    "runtime.server_num_gpus=auto",
    "runtime.actor_num_cpus=0.1",
    "runtime.server_num_cpus=0.1",
]


@ray.remote(num_cpus=0)
class Probe:
    def where(self) -> list:
        return [ray.get_runtime_context().get_node_id(), [str(g) for g in ray.get_gpu_ids()]]


def info(address: str, gib: float, *more: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli_main(
            [
                "info",
                *OVERRIDES,
                *more,
                f"runtime.address={address}",
                f"runtime.gpu_memory_gb={gib}",
            ]
        )
    return code, out.getvalue()


def main() -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0})
    gpu_node = cluster.add_node(num_cpus=2, num_gpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        code, text = info(cluster.address, 2.0)
        # 0.6 GiB GPUs: the server's share (0.97) leaves one GPU for client actors, which
        # holds one of them with its CUDA context, not the 12 asked for
        refused_code, refused = info(cluster.address, 0.6, "runtime.num_actors=12")
        config = load_config(
            None, [*OVERRIDES, f"runtime.address={cluster.address}", "runtime.gpu_memory_gb=2"]
        )
        fitted = fit_to_cluster(config)
        runtime = fitted.config.runtime
        layout = layout_on_cluster(runtime, 12)
        group = reserve(layout, 60)
        probes = [
            Probe.options(
                num_cpus=0.1, num_gpus=runtime.actor_num_gpus, **in_bundle(group, b)
            ).remote()
            for b in range(layout.actor_bundle(0), layout.actor_bundle(layout.num_actors))
        ]
        server = Probe.options(
            num_cpus=0.1, num_gpus=runtime.server_num_gpus, **in_bundle(group, 0)
        ).remote()
        seen = ray.get([p.where.remote() for p in probes], timeout=180)
        server_seen = ray.get(server.where.remote(), timeout=180)
        release(group)
        plan = MemoryPlanner(fitted.config).plan(layout.groups)
        result = {
            "info_code": code,
            "info": text,
            "refused_code": refused_code,
            "refused": refused,
            "actor_gpus": runtime.actor_num_gpus,
            "server_gpus": runtime.server_num_gpus,
            "num_actors": runtime.num_actors,
            "window": runtime.max_inflight_uploads,
            "layout_actors": layout.num_actors,
            "actors_on_gpu_node": sum(node == gpu_node.node_id for node, _ in seen),
            "actor_gpu_ids": [gpus for _, gpus in seen],
            "server_gpu_ids": server_seen[1],
            "client_gpu_bytes": plan.actor("client actor").gpu_total,
            "server_gpu_bytes": plan.actor("server actor").gpu_total,
        }
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
