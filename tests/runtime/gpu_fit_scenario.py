"""Run as a script by tests/test_memory_fit.py: 'auto' GPU shares on a loopback Ray cluster
whose nodes declare GPUs they do not have (a 2-CPU head without GPUs, a 2-CPU node with 2),
each GPU said to hold runtime.gpu_memory_gb. One cluster for every case: what `info` prints
for a layout that fits and for one that cannot (left out with --no-info); then a 2-round
run of each algorithm named on the command line (default FSL-SAGE) under
actor_num_gpus=auto and server_num_gpus=auto, its actors holding the fitted GPU shares while
runtime.device=cpu keeps the work on CPU (the GPUs are not there), with the GPUs and
resources each actor was given, its run.log, and the same run in-process. Prints one JSON
line."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from fslsage_ray.callbacks import RunCallback  # noqa: E402
from fslsage_ray.cli import main as cli_main  # noqa: E402
from fslsage_ray.config import load_config, quickstart_path  # noqa: E402
from fslsage_ray.memory.estimate import memory_planner  # noqa: E402
from fslsage_ray.outputs.metrics import TIMING_COLUMNS  # noqa: E402
from fslsage_ray.outputs.run_dir import LOG_FILE  # noqa: E402
from fslsage_ray.simulation import Simulation  # noqa: E402

OVERRIDES = [
    "algorithm.num_clients=12",
    "data.train_subset=600",
    "data.test_subset=120",
    "runtime.actor_num_gpus=auto",
    "runtime.server_num_gpus=auto",
    "runtime.actor_num_cpus=0.1",
    "runtime.server_num_cpus=0.1",
    "run.rounds=2",
    "runtime.device=cpu",  # runs: GPU shares reserved, the work on CPU
]


def where(actor: object) -> dict:
    """Run inside an actor (__ray_call__): its node, the GPUs Ray gave it and its resources."""
    context = ray.get_runtime_context()
    return {
        "node": context.get_node_id(),
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "resources": context.get_assigned_resources(),
    }


class SeeActors(RunCallback):
    """After the first round, while the actors live: where each of them runs and with what."""

    def __init__(self) -> None:
        self.sim: Simulation | None = None
        self.clients: list[dict] = []
        self.server: dict = {}

    def on_round_recorded(self, row) -> None:
        backend = self.sim.backend
        if not self.clients:
            self.clients = ray.get([a.__ray_call__.remote(where) for a in backend.actors])
            self.server = ray.get(backend.server_actor.__ray_call__.remote(where))


def learning(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]


def train(address: str, algorithm: str, out: Path) -> dict:
    """One run on the cluster under 'auto' and the same run in-process."""
    on_cluster = [*OVERRIDES, f"algorithm.name={algorithm}"]
    config = load_config(  # the quick start, as `info` reads it
        quickstart_path(), [*on_cluster, f"runtime.address={address}", "runtime.gpu_memory_gb=2"]
    )
    seen = SeeActors()
    sim = seen.sim = Simulation(config, out / algorithm, progress=False, callbacks=[seen])
    rows = sim.run().to_pylist()
    layout, runtime = sim.backend.layout, sim.config.runtime
    plan = memory_planner(sim.config).plan(layout.groups)  # the fit's probe, kept
    inprocess = load_config(quickstart_path(), [*on_cluster, "runtime.backend=inprocess"])
    reference = Simulation(inprocess, out / f"{algorithm}-inprocess", progress=False).run()
    return {
        "rows": learning(rows),
        "reference": learning(reference.to_pylist()),
        "run_log": (out / algorithm / LOG_FILE).read_text(),
        "actor_gpus": runtime.actor_num_gpus,
        "server_gpus": runtime.server_num_gpus,
        "num_actors": runtime.num_actors,
        "window": runtime.max_inflight_uploads,
        "layout_actors": layout.num_actors,
        "clients": seen.clients,
        "server": seen.server,
        "devices": sim.backend.devices,
        "client_gpu_bytes": plan.actor("client actor").gpu_total,
        "server_gpu_bytes": plan.actor("server actor").gpu_total,
    }


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


def main(algorithms: list[str], with_info: bool = True) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0})
    gpu_node = cluster.add_node(num_cpus=2, num_gpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        result: dict = {"gpu_node": gpu_node.node_id}
        if with_info:
            result["info_code"], result["info"] = info(cluster.address, 2.0)
            # 0.6 GiB GPUs: the server's share (0.97) leaves one GPU for client actors, which
            # holds one of them with its CUDA context, not the 12 asked for
            refused = info(cluster.address, 0.6, "runtime.num_actors=12")
            result["refused_code"], result["refused"] = refused
        with tempfile.TemporaryDirectory(prefix="gpu-fit-") as out:
            result["runs"] = {a: train(cluster.address, a, Path(out)) for a in algorithms}
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    names = [a for a in sys.argv[1:] if a != "--no-info"]
    main(names or ["fsl_sage"], with_info="--no-info" not in sys.argv)
