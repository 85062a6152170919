"""GPU shares from the memory plan (runtime.*_num_gpus=auto, memory/fit.py): the decision on
node dictionaries with a plan of known sizes, then on the real plan and a loopback Ray
cluster with declared GPUs that `info` lays out as fitted."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from fslsage_ray.config import load_config
from fslsage_ray.config.schema import ConfigError, RuntimeConfig
from fslsage_ray.memory.fit import (
    CUDA_CONTEXT,
    HEADROOM,
    GpuSize,
    fit_gpus,
    gpu_sizes,
)
from fslsage_ray.memory.parts import ActorMemory, Part
from fslsage_ray.runtime.placement import layout_actors

GIB = 2**30
HERE = Path(__file__).parent


def plan_of(state_per_client: float, step: float, graph: float, server: float = 2.0):
    """A plan with known GPU bytes: a client actor holds `state_per_client` GiB per hosted
    client and one step of `step` GiB plus `graph` GiB per more in-flight graph; the server
    `server` GiB. The batch scales the step parts (a refusal's suggestion)."""

    def needs(actors: int, window: int, batch: int | None, m: int = 12, b0: int = 32):
        hosted = math.ceil(m / actors)
        scale = (batch or b0) / b0
        client = ActorMemory(
            "client actor",
            actors,
            hosted,
            (
                Part(f"optimizer state (Adam): {hosted} x", int(state_per_client * hosted * GIB)),
                Part("one step", int(step * scale * GIB), "step"),
                Part("in-flight window", int(graph * scale * (window - 1) * GIB), "step"),
                Part("data", 10 * GIB, on_device=False),  # host memory: never on the GPU
            ),
            0,
        )
        server_actor = ActorMemory(
            "server actor", 1, 0, (Part("server model", int(server * GIB)),), 0
        )
        return client, server_actor

    return needs


def runtime(**kw) -> RuntimeConfig:
    base = {"actor_num_gpus": "auto", "server_num_gpus": "auto", "actor_num_cpus": 1.0}
    return RuntimeConfig(**{**base, **kw})


def gpu_node(gpus: int, cpus: int = 16, kind: str | None = None) -> dict[str, float]:
    node = {"CPU": float(cpus), "GPU": float(gpus), "memory": 64.0 * GIB}
    if kind:
        node[f"accelerator_type:{kind}"] = 1.0
    return node


def usable(gib: float) -> float:
    return gib * GIB * (1 - HEADROOM)


def test_shares_are_sized_from_planned_bytes_with_the_stated_headroom() -> None:
    nodes = [gpu_node(1)]
    fit = fit_gpus(runtime(), 12, nodes, [GpuSize(40 * GIB, "test")], plan_of(0.25, 0.5, 0.1))
    # server: 2 GiB + context over 36 GiB usable, rounded up to a hundredth
    assert fit.server_gpus == math.ceil((2 * GIB + CUDA_CONTEXT) * 100 / usable(40)) / 100
    # every client on its own actor (the CPUs allow 16): 0.25 + 0.5 + 7 x 0.1 GiB + context
    assert fit.num_actors == 12 and fit.window == 8
    need = (0.25 + 0.5 + 7 * 0.1) * GIB + CUDA_CONTEXT
    assert fit.actor_gpus == math.ceil(need * 100 / usable(40)) / 100
    # what Ray will pack really fits: the server and 12 actors on one GPU
    assert fit.server_gpus + 12 * fit.actor_gpus <= 1.0
    assert 12 * need + 2 * GIB + CUDA_CONTEXT <= usable(40)
    applied = fit.apply(runtime())
    layout = layout_actors(applied, 12, nodes)
    assert layout.num_actors == 12 and layout.actor_request["GPU"] == fit.actor_gpus
    assert any(
        line.startswith("gpu memory: 40.0 GiB") and "10% headroom" in line for line in fit.lines
    )
    assert any(
        line.startswith("in-flight window: 8 (runtime.max_inflight_uploads=8 kept")
        for line in fit.lines
    )


def test_fewer_actors_then_a_smaller_window_when_memory_is_short() -> None:
    # 10 GiB GPU, 9 usable: the server 2 + 0.5 context leaves 6.5 GiB for client actors
    needs = plan_of(0.25, 1.0, 0.2)
    fit = fit_gpus(runtime(), 12, [gpu_node(1)], [GpuSize(10 * GIB, "test")], needs)
    assert fit.window == 8
    share_room = 1.0 - fit.server_gpus
    assert fit.num_actors * fit.actor_gpus <= share_room + 1e-9
    # one actor fewer than asked for each client; the line says why this many
    assert fit.num_actors < 12
    assert any("the most the nodes hold at their share" in line for line in fit.lines)
    # a fixed actor count that only fits with a smaller window gets that window
    fixed = runtime(num_actors=2)
    fit = fit_gpus(fixed, 12, [gpu_node(1)], [GpuSize(10 * GIB, "test")], needs)
    assert fit.num_actors is None and 1 <= fit.window < 8
    lowered = [line for line in fit.lines if line.startswith("in-flight window")]
    assert "lowered from runtime.max_inflight_uploads=8" in lowered[0]
    client = needs(2, fit.window, None)[0].gpu_total + CUDA_CONTEXT
    assert 2 * client + 2 * GIB + CUDA_CONTEXT <= usable(10)


def test_a_layout_that_cannot_fit_is_refused_in_one_line_naming_parts_and_what_would() -> None:
    needs = plan_of(0.1, 6.8, 1.0, 1.0)  # a step of 6.8 GiB at batch 32 on an 8 GiB GPU
    with pytest.raises(ConfigError) as refused:
        fit_gpus(runtime(), 12, [gpu_node(1)], [GpuSize(8 * GIB, "test")], needs, True, 32)
    text = str(refused.value)
    assert "\n" not in text
    assert "a client actor with 1 client(s) at window 1 needs 6.9 GiB" in text
    assert "one step 6.8 GiB" in text and "one GPU has 8.0 GiB (7.2 GiB usable)" in text
    # what would fit: half the batch, one actor of 1.2 + 3.4 + 0.5 GiB beside the server
    assert "try algorithm.batch_size<=16" in text
    # the server alone over a GPU
    with pytest.raises(ConfigError, match=r"^the server actor needs 9\.0 GiB"):
        fit_gpus(runtime(), 12, [gpu_node(1)], [GpuSize(8 * GIB, "t")], plan_of(0, 1, 0, 9.0))


def test_gpu_sizes_come_from_the_setting_the_driver_or_rays_accelerator_type() -> None:
    nodes = [gpu_node(2, kind="H100"), gpu_node(1, kind="T4"), {"CPU": 4.0}, gpu_node(1, kind="X9")]
    by_type = gpu_sizes(nodes, None)
    assert by_type[0].nbytes == int(79.1 * GIB) and "H100" in by_type[0].source
    assert by_type[1].nbytes == int(14.7 * GIB)
    assert by_type[2] is None and by_type[3] is None
    told = gpu_sizes(nodes, 24.0)
    assert [s and s.nbytes for s in told] == [24 * GIB, 24 * GIB, None, 24 * GIB]
    seen = gpu_sizes(nodes, None, ("NVIDIA H100 80GB HBM3", 85 * 10**9))
    assert seen[0].nbytes == 85 * 10**9 and seen[1].nbytes == int(14.7 * GIB)
    # a GPU of unknown memory is refused, saying which setting to give
    with pytest.raises(ConfigError, match="set runtime.gpu_memory_gb"):
        fit_gpus(runtime(), 4, nodes, by_type, plan_of(0.1, 0.1, 0.1))
    # the smallest GPU sizes every share (Ray may put an actor on any of them)
    fit = fit_gpus(runtime(), 4, nodes[:2], by_type[:2], plan_of(0.1, 0.1, 0.1))
    assert any("14.7 GiB a GPU (the smallest of 2" in line for line in fit.lines)


def test_no_gpu_means_cpu_and_numbers_are_kept() -> None:
    fit = fit_gpus(runtime(), 4, [{"CPU": 4.0}], [None], plan_of(1, 1, 1))
    assert (fit.actor_gpus, fit.server_gpus, fit.num_actors, fit.window) == (0.0, 0.0, None, 8)
    with pytest.raises(ConfigError, match="no node has a GPU"):
        fit_gpus(runtime(actor_num_cpus=0.0), 4, [{"CPU": 4.0}], [None], plan_of(1, 1, 1))
    # only the server's share left to the plan: the client actors' 0.25 stays
    fit = fit_gpus(
        runtime(actor_num_gpus=0.25), 4, [gpu_node(1)], [GpuSize(16 * GIB, "t")], plan_of(1, 1, 1)
    )
    assert fit.actor_gpus == 0.25 and fit.window == 8 and fit.num_actors is None
    assert 0 < fit.server_gpus < 0.25


def test_auto_is_refused_where_it_cannot_be_decided_and_numbers_still_checked() -> None:
    with pytest.raises(ConfigError, match="must be a number or 'auto'"):
        RuntimeConfig(actor_num_gpus="half")
    with pytest.raises(ConfigError, match="gpu_memory_gb must be > 0"):
        RuntimeConfig(gpu_memory_gb=0.0)
    with pytest.raises(ConfigError, match="reached the actor layout undecided"):
        layout_actors(runtime(), 4, [gpu_node(1)])
    RuntimeConfig(actor_num_gpus="auto", actor_num_cpus=0.0, device="cuda", server_num_gpus="auto")


def test_fitted_config_keeps_learning_settings() -> None:
    """What the fit changes is layout only: every results-marked key is untouched."""
    config = load_config(None, ["runtime.actor_num_gpus=auto", "algorithm.num_clients=4"])
    fit = fit_gpus(
        config.runtime, 4, [gpu_node(1)], [GpuSize(16 * GIB, "t")], plan_of(0.1, 0.2, 0.1)
    )
    fitted = replace(config, runtime=fit.apply(config.runtime))
    assert fitted.algorithm == config.algorithm and fitted.optim == config.optim
    assert fitted.runtime.upload_order == config.runtime.upload_order


def loopback_scenario(*args: str) -> dict:
    """tests/runtime/gpu_fit_scenario.py on its own loopback cluster: a 2-CPU head without
    GPUs and a 2-CPU node declaring 2 GPUs of 2 GiB (they do not exist: Ray hands out the
    IDs all the same)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env |= {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    proc = subprocess.run(
        [sys.executable, str(HERE / "runtime" / "gpu_fit_scenario.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def loopback() -> dict:
    """One cluster for the module's cases: `info` on a layout that fits and on one that
    cannot, then a 2-round FSL-SAGE run under 'auto' and the same run in-process."""
    return loopback_scenario("fsl_sage")


def fit_lines(text: str) -> list[str]:
    """The 'auto' fit's decision lines, as `info` prints them or run.log records them."""
    return [x[x.index("gpu fit: ") :] for x in text.splitlines() if "gpu fit: " in x]


@pytest.mark.ray
def test_info_and_actors_on_a_loopback_cluster_follow_the_fit(loopback) -> None:
    """`info` prints each decision; the run's actors, placed in the fitted bundles, get the
    GPUs the plan gave them; 0.6 GiB GPUs refuse 12 actors."""
    case, run = loopback, loopback["runs"]["fsl_sage"]
    assert case["info_code"] == 0
    decided = fit_lines(case["info"])
    assert [x.split(":")[1].strip() for x in decided] == [
        "gpu memory",
        "server actor",
        "client actor",
        "client actors",
        "in-flight window",
    ]
    assert "2.0 GiB a GPU" in decided[0] and "runtime.gpu_memory_gb" in decided[0]
    # the shares really fit one 2 GiB GPU: tensors + a CUDA context per actor in 90% of it
    usable = 2 * GIB * (1 - HEADROOM)
    server, client = run["server_gpus"], run["actor_gpus"]
    assert server * usable >= run["server_gpu_bytes"] + CUDA_CONTEXT
    assert client * usable >= run["client_gpu_bytes"] + CUDA_CONTEXT
    per_gpu = int(1 / client + 1e-9)
    assert per_gpu == 3 and f"{per_gpu} a GPU" in decided[2]
    # the most actors the two GPUs hold: 3 beside the server's share on one, 3 on the other,
    # less what the server leaves; all on the GPU node, as `info` planned
    actors = run["num_actors"]
    assert actors == run["layout_actors"] == len(run["clients"])
    assert all(seen["node"] == case["gpu_node"] for seen in [*run["clients"], run["server"]])
    assert actors == int((1 - server) / client + 1e-9) + per_gpu
    assert f"client actors: {actors}" in decided[3] and f"room for {actors}" in case["info"]
    assert run["window"] == 8 and "kept" in decided[4]
    gpus = [seen["gpu_ids"] for seen in run["clients"]]
    assert all(len(ids) == 1 for ids in gpus)
    assert run["server"]["gpu_ids"] == ["0"]
    gpus = [ids[0] for ids in gpus]
    assert gpus.count("0") * client + server <= 1 and gpus.count("1") * client <= 1
    # a layout that cannot fit: refused before any work, in one line naming what and why
    assert case["refused_code"] != 0
    errors = [x for x in case["refused"].splitlines() if x.startswith("error:")]
    assert len(errors) == 1
    assert "12 client actor(s) of" in errors[0] and "the nodes hold 1 beside" in errors[0]
    assert "try leaving runtime.num_actors and clients_per_actor unset" in errors[0]


def check_run_under_auto(case: dict, algorithm: str) -> dict:
    """A run under actor_num_gpus=auto and server_num_gpus=auto: its run.log gives each
    decision with its reason, every actor holds the fitted GPU share as a Ray resource (and
    computes on CPU, as runtime.device=cpu says), and the metrics equal the in-process run's
    bit for bit. Returns the run's record."""
    run = case["runs"][algorithm]
    logged = fit_lines(run["run_log"])
    assert [x.split(":")[1].strip() for x in logged] == [
        "gpu memory",
        "server actor",
        "client actor",
        "client actors",
        "in-flight window",
    ]
    hosted = math.ceil(12 / run["num_actors"])
    assert f"client actors: {run['num_actors']}, up to {hosted} clients each" in logged[3]
    assert f"{run['actor_gpus']:g} GPU each (runtime.actor_num_gpus=auto)" in logged[2]
    assert f"server actor: {run['server_gpus']:g} GPU" in logged[1]
    assert 0 < run["actor_gpus"] < 1 and 0 < run["server_gpus"] < 1
    assert hosted > 1  # the fit put several clients on an actor: fewer actors than clients
    for seen in run["clients"]:
        assert seen["resources"]["GPU"] == run["actor_gpus"] and len(seen["gpu_ids"]) == 1
    assert run["server"]["resources"]["GPU"] == run["server_gpus"]
    assert run["devices"] == ["cpu"] * (1 + run["num_actors"])
    assert "computing on: server cpu, clients cpu" in run["run_log"]
    assert len(run["rows"]) == 2 and run["rows"] == run["reference"]
    return run


@pytest.mark.ray
def test_a_run_under_auto_logs_the_fit_holds_its_shares_and_learns_as_in_process(
    loopback,
) -> None:
    run = check_run_under_auto(loopback, "fsl_sage")
    # the run decided as `info` did for the same config and cluster
    assert fit_lines(run["run_log"]) == fit_lines(loopback["info"])


@pytest.mark.ray
@pytest.mark.slow
def test_splitfed_ms_under_auto_learns_as_in_process() -> None:
    """SplitFed-MS: per-client server copies on the server actor's share."""
    check_run_under_auto(loopback_scenario("--no-info", "sflv1"), "sflv1")
