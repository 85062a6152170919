"""How many client actors fit, and where the server goes (fake GPUs on a CPU machine)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fslsage_ray.config import ConfigError, RuntimeConfig
from fslsage_ray.runtime.placement import plan_actors, ray_options

CLUSTER = {"CPU": 16.0, "GPU": 4.0, "memory": 64 * 1024**3}


def _rt(**kw) -> RuntimeConfig:
    return RuntimeConfig(**kw)


def test_quarter_gpus_give_sixteen_actors_minus_the_servers_share():
    plan = plan_actors(_rt(actor_num_gpus=0.25, actor_num_cpus=0.5), 100, CLUSTER)
    assert plan.num_actors == 16  # the server asks for CPU only
    plan = plan_actors(
        _rt(actor_num_gpus=0.25, actor_num_cpus=0.5, server_num_gpus=1), 100, CLUSTER
    )
    assert plan.num_actors == 12  # one whole GPU set aside for the server


def test_clients_are_packed_evenly_onto_the_actors():
    plan = plan_actors(_rt(actor_num_gpus=0.25, actor_num_cpus=0.5), 1000, CLUSTER)
    sizes = [len(g) for g in plan.groups]
    assert sum(sizes) == 1000 and max(sizes) - min(sizes) <= 1
    flat = [c for g in plan.groups for c in g]
    assert flat == list(range(1000))


def test_never_more_actors_than_clients_and_forced_packing():
    assert plan_actors(_rt(actor_num_cpus=0.5), 3, CLUSTER).num_actors == 3
    plan = plan_actors(_rt(actor_num_cpus=0.5, clients_per_actor=25), 100, CLUSTER)
    assert plan.num_actors == 4


def test_memory_and_custom_resources_limit_the_pool():
    plan = plan_actors(_rt(actor_num_cpus=0.1, actor_memory_gb=8), 100, CLUSTER)
    assert plan.num_actors == 8
    cluster = {**CLUSTER, "accel": 3.0}
    plan = plan_actors(_rt(actor_num_cpus=0.1, actor_resources={"accel": 1}), 100, cluster)
    assert plan.num_actors == 3
    assert ray_options(plan.actor_request)["resources"] == {"accel": 1}


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"actor_num_gpus": 0.25}, "no client actor fits"),  # no GPU at all
        ({"server_num_gpus": 1}, "server actor asks for GPU"),
        ({"num_actors": 5, "actor_num_cpus": 1}, "room for 4"),  # the server shares cores
    ],
)
def test_impossible_requests_are_refused(kw, message):
    with pytest.raises(ConfigError, match=message):
        plan_actors(_rt(**kw), 10, {"CPU": 4.0})


SCRIPT = r"""
import json, ray
from fslsage_ray.config import RuntimeConfig
from fslsage_ray.runtime.placement import plan_actors, ray_options
ray.init(address="local", num_cpus=8, num_gpus=4, include_dashboard=False, log_to_driver=False)

@ray.remote
class Probe:
    def gpus(self):
        return ray.get_gpu_ids()

rt = RuntimeConfig(actor_num_gpus=0.25, actor_num_cpus=0.25, server_num_gpus=0,
                   server_num_cpus=0.25)
plan = plan_actors(rt, 100, {k: float(v) for k, v in ray.cluster_resources().items()})
server = Probe.options(**ray_options(plan.server_request)).remote()
actors = [Probe.options(**ray_options(plan.actor_request)).remote() for _ in range(plan.num_actors)]
placed = ray.get([a.gpus.remote() for a in actors], timeout=60)
extra = Probe.options(**ray_options(plan.actor_request)).remote()
ready, _ = ray.wait([extra.gpus.remote()], timeout=3)
print(json.dumps({"planned": plan.num_actors, "placed": len(placed),
                  "gpu_ids": sorted({g for ids in placed for g in ids}),
                  "extra_placed": bool(ready), "server_gpus": ray.get(server.gpus.remote())}))
"""


@pytest.mark.ray
def test_real_ray_places_sixteen_quarter_gpu_actors_and_not_a_seventeenth(tmp_path):
    import json

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env |= {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=240, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["planned"] == 16 and result["placed"] == 16
    assert result["gpu_ids"] == ["0", "1", "2", "3"] or result["gpu_ids"] == [0, 1, 2, 3]
    assert result["extra_placed"] is False  # the 17th stays pending: no GPU share left
    assert result["server_gpus"] == []  # the server asked for none here
