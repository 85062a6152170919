"""How many client actors fit and where each bundle goes: per node and per GPU, as Ray places
them. The planner on plain node dicts, then a real two-node Ray cluster with fake GPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fslsage_ray.config import ConfigError, RuntimeConfig
from fslsage_ray.runtime.placement import layout_actors, ray_options

HERE = Path(__file__).parent
GIB = 1024**3
ONE_NODE = [{"CPU": 16.0, "GPU": 4.0, "memory": 64 * GIB}]
TWO_SMALL = [{"CPU": 2.0}, {"CPU": 2.0}]


def _plan(nodes, num_clients=100, **kw):
    return layout_actors(RuntimeConfig(**kw), num_clients, nodes)


def _gpus(layout) -> list[tuple[int, tuple[int, ...]]]:
    """(node, GPUs) of each client actor's bundle."""
    slots = layout.slots[layout.actor_bundle(0) :]
    return [(s.node, dict(s.devices).get("GPU", ())) for s in slots]


def test_a_gpu_share_must_fit_on_one_gpu():
    layout = _plan(ONE_NODE, actor_num_gpus=0.3)
    assert layout.num_actors == 12  # 3 per GPU; the summed 4 / 0.3 would say 13
    per_gpu = np.bincount([g for _, gpus in _gpus(layout) for g in gpus])
    assert per_gpu.tolist() == [3, 3, 3, 3]
    with pytest.raises(ConfigError, match="room for 12"):
        _plan(ONE_NODE, actor_num_gpus=0.3, num_actors=13)


def test_quarter_gpus_and_a_server_that_takes_one_whole_gpu():
    assert _plan(ONE_NODE, actor_num_gpus=0.25, actor_num_cpus=0.5).num_actors == 16
    layout = _plan(ONE_NODE, actor_num_gpus=0.25, actor_num_cpus=0.5, server_num_gpus=1)
    assert layout.num_actors == 12  # one whole GPU set aside for the server
    assert dict(layout.slots[layout.server_bundle].devices) == {"GPU": (0,)}
    # 0.3 each: the server's whole GPU leaves 3 GPUs, 9 actors (summed: (4 - 1) / 0.3 = 10)
    assert _plan(ONE_NODE, actor_num_gpus=0.3, server_num_gpus=1).num_actors == 9


def test_an_algorithm_without_a_server_reserves_nothing_for_one():
    asks = {"actor_num_gpus": 0.25, "actor_num_cpus": 0.5, "server_num_gpus": 1}
    fedavg = layout_actors(RuntimeConfig(**asks), 100, ONE_NODE, uses_server=False)
    assert fedavg.num_actors == 16 and fedavg.server_bundle is None  # the GPU is not set aside
    assert len(fedavg.bundles()) == 16
    assert "no server actor" in fedavg.describe() and "server actor x" not in fedavg.describe()
    assert "server actor x {GPU: 1}" in _plan(ONE_NODE, **asks).describe()


def test_an_actor_larger_than_every_node_is_refused_naming_node_shapes_and_request():
    with pytest.raises(ConfigError) as info:
        _plan(TWO_SMALL, actor_num_cpus=3)  # summed, 4 - 1 CPUs would "fit" one
    message = str(info.value)
    assert "no client actor fits" in message and "{CPU: 3}" in message
    assert "2 x {CPU: 2, GPU: 0}" in message and "\n" not in message


def test_the_server_goes_on_the_only_node_with_its_gpus():
    nodes = [{"CPU": 4.0, "GPU": 1.0}, {"CPU": 4.0, "GPU": 3.0}, {"CPU": 8.0}]
    layout = _plan(nodes, actor_num_gpus=0.5, actor_num_cpus=0.5, server_num_gpus=2)
    assert layout.slots[layout.server_bundle].node == 1
    assert layout.num_actors == 4  # 2 on node 0's GPU, 2 on node 1's last GPU
    with pytest.raises(ConfigError, match="server actor asks for .*GPU: 4.* no node holds"):
        _plan(nodes, actor_num_gpus=0.5, server_num_gpus=4)  # 4 GPUs in all, not on one node


def test_memory_and_custom_resources_count_per_node():
    nodes = [{"CPU": 8.0, "memory": 8 * GIB, "slot": 1.0}] * 2
    assert _plan(nodes, actor_num_cpus=0.1, actor_memory_gb=5).num_actors == 2  # summed: 3
    layout = _plan(nodes, actor_num_cpus=0.1, actor_resources={"slot": 1})
    assert layout.num_actors == 2
    assert ray_options(layout.actor_request)["resources"] == {"slot": 1}


def test_strategies_place_bundles_as_named():
    nodes = [{"CPU": 4.0}] * 3
    pack = _plan(nodes, num_actors=3, server_num_cpus=0)
    assert [s.node for s in pack.slots] == [0, 0, 0] and pack.server_bundle is None
    spread = _plan(nodes, num_actors=3, server_num_cpus=0, placement_strategy="spread")
    assert [s.node for s in spread.slots] == [0, 1, 2]
    strict = _plan(nodes, server_num_cpus=1, placement_strategy="strict_spread")
    assert strict.num_actors == 2  # the server's node holds no client actor
    assert len({s.node for s in strict.slots}) == 3
    with pytest.raises(ConfigError, match="room for 2"):
        _plan(nodes, num_actors=3, server_num_cpus=1, placement_strategy="strict_spread")


def test_fractional_and_zero_server_shares_and_no_nodes():
    layout = _plan(TWO_SMALL, 10, actor_num_cpus=0.5, server_num_cpus=0.25)
    assert layout.num_actors == 7  # 3 beside the server, 4 on the other node
    assert layout.bundles()[0] == {"CPU": 0.25} and len(layout.bundles()) == 8
    assert _plan(TWO_SMALL, 10, actor_num_cpus=0.5, server_num_cpus=0).num_actors == 8
    with pytest.raises(ConfigError, match="nodes: none"):
        _plan([], 10)


def test_clients_are_split_as_before_whatever_the_layout():
    """The groups are np.array_split over the actor count, so results stay identical."""
    for nodes, kw in [(ONE_NODE, {"actor_num_gpus": 0.3}), (TWO_SMALL, {"num_actors": 3})]:
        layout = _plan(nodes, 1000, actor_num_cpus=0.5, **kw)
        split = np.array_split(np.arange(1000), layout.num_actors)
        assert [list(g) for g in layout.groups] == [g.tolist() for g in split]
    assert _plan(ONE_NODE, 3, actor_num_cpus=0.5).num_actors == 3  # never more than clients
    assert _plan(ONE_NODE, 100, actor_num_cpus=0.5, clients_per_actor=25).num_actors == 4


def test_on_an_autoscaling_cluster_actors_beyond_the_nodes_wait_for_new_nodes():
    rt = RuntimeConfig(num_actors=6, actor_num_cpus=1, server_num_cpus=1)
    layout = layout_actors(rt, 10, TWO_SMALL, ids=["a", "b"], may_grow=True)
    assert layout.num_actors == 6 and layout.capacity == 3
    assert [s.node for s in layout.slots] == [0, 0, 1, 1, -1, -1, -1]
    assert "3 bundle(s) on nodes yet to be added" in layout.describe()
    assert layout.bundle_lines()[-1].endswith("-> a node yet to be added")
    elastic = layout_actors(
        RuntimeConfig(actor_num_cpus=1, server_num_cpus=1), 10, TWO_SMALL, may_grow=True
    )
    assert elastic.num_actors == 3  # unforced, the pool is what the nodes hold now
    with pytest.raises(ConfigError, match="room for 3"):
        layout_actors(rt, 10, TWO_SMALL)  # no autoscaler: refused at once


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"actor_num_gpus": 1.5}, "whole number of GPUs"),
        ({"server_num_gpus": 2.5}, "whole number of GPUs"),
        ({"placement_strategy": "strict_pack"}, "placement_strategy must be one of"),
        ({"placement_timeout_s": 0}, "placement_timeout_s must be > 0"),
    ],
)
def test_settings_ray_cannot_honour_are_refused(kw, message):
    with pytest.raises(ConfigError, match=message):
        RuntimeConfig(**kw)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"actor_num_gpus": 0.25}, "no client actor fits"),  # no GPU at all
        ({"server_num_gpus": 1}, "server actor asks for"),
        ({"num_actors": 5, "actor_num_cpus": 1}, "room for 4"),  # the server shares cores
    ],
)
def test_impossible_requests_are_refused(kw, message):
    with pytest.raises(ConfigError, match=message):
        _plan([{"CPU": 4.0}], 10, **kw)


# --- a real cluster: head 2 CPUs + 1 GPU, second node 2 CPUs + 3 GPUs (fake GPUs) ----------
@pytest.fixture(scope="module")
def on_ray() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env |= {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    proc = subprocess.run(
        [sys.executable, str(HERE / "placement_scenario.py")],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
        cwd=HERE,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.ray
def test_ray_starts_the_twelve_planned_gpu_share_actors_three_per_gpu(on_ray):
    case = on_ray["gpu_share"]
    assert case["planned"] == 12
    assert case["per_gpu"] == {"head:0": 3, "other:0": 3, "other:1": 3, "other:2": 3}
    assert case["thirteen_placed"] is False  # Ray agrees: a 13th does not fit
    assert "room for 12" in case["forced_13"]["error"] and case["forced_13"]["seconds"] < 5
    assert case["info_code"] == 0
    bundles = [x for x in case["info"].splitlines() if x.strip().startswith("bundle")]
    assert len(bundles) == 13 and all("-> 127.0.0.1/" in x for x in bundles)
    assert sum("GPU 0" in x for x in bundles) == 6  # head and other node: 3 each on GPU 0


@pytest.mark.ray
def test_ray_refuses_at_once_what_no_node_holds(on_ray):
    case = on_ray["too_big"]
    assert "no client actor fits" in case["refusal"]["error"]
    assert "{CPU: 3}" in case["refusal"]["error"] and case["refusal"]["seconds"] < 5
    assert case["ray_places"] is False


@pytest.mark.ray
def test_ray_puts_the_server_on_the_only_node_with_its_gpus(on_ray):
    case = on_ray["mixed"]
    assert case["planned"] == 4
    assert case["server_node"] == "other" and not case["server_bundle_on_head"]
    assert len(case["server_gpus"]) == 2


@pytest.mark.ray
def test_ray_spread_puts_one_actor_per_node_and_pack_one_node(on_ray):
    case = on_ray["strategies"]
    assert case["nodes_used"] == {"spread": 2, "pack": 1}
    assert "room for 1" in case["strict"]["error"]


@pytest.mark.ray
def test_a_group_ray_cannot_place_now_is_refused_after_the_timeout(on_ray):
    case = on_ray["held_elsewhere"]
    assert case["error"].startswith("Ray did not place 13 bundles")
    assert "placement_timeout_s" in case["error"] and "\n" not in case["error"]
    assert 2.0 <= case["seconds"] < 15


@pytest.mark.ray
def test_a_run_refused_after_its_reservation_gives_the_resources_back(tmp_path, ray_local):
    from ray.util.placement_group import placement_group_table
    from run_helpers import SMALL

    from fslsage_ray.config import load_config
    from fslsage_ray.simulation import Simulation

    def held() -> int:
        return sum(g["state"] == "CREATED" for g in placement_group_table().values())

    before = held()
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(OSError):  # the run folder fails after the group was reserved
        Simulation(load_config(None, SMALL), run_dir=tmp_path / "a-file" / "run", progress=False)
    assert held() == before


@pytest.mark.ray
def test_bundles_left_for_a_new_node_wait_for_one_to_join(on_ray):
    case = on_ray["grows"]
    assert case["slots"] == [0, 1, -1]  # server on the head, one actor beside, one to come
    assert case["waiting_before_join"] is True
    assert "error" not in case and case["nodes"] == 3  # the joined node took the third
