"""The memory plan (fslsage_ray/memory) against what the run's own objects hold, part by part:
resident state (every tensor's storage), one client step, one server step, an alignment and an
evaluation (PyTorch's allocation peak), within 25% (benchmarks/memory_plan.py says how)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from memory_plan import CASES, compare  # noqa: E402

from fslsage_ray.cli import main  # noqa: E402

SMALL_DIGITS = [
    "algorithm.num_clients=3",
    "data.train_subset=300",
    "data.test_subset=120",
    "alignment.buffer_size=64",
    "alignment.batch_size=32",
]


def _within(rows: list[dict]) -> None:
    assert rows, "nothing compared"
    off = [r for r in rows if not 0.75 <= r["ratio"] <= 1.25]
    assert not off, "\n".join(
        f"{r['case']} {r['algorithm']} {r['part']}: plan {r['plan']} measured {r['measured']}"
        for r in off
    )


@pytest.mark.parametrize("algorithm", ["fsl_sage", "sflv1", "fedavg"])
def test_plan_matches_measured_parts_on_the_digits(algorithm: str) -> None:
    rows = compare("quickstart", algorithm, SMALL_DIGITS)
    parts = {r["part"] for r in rows}
    assert {"resident", "client step", "evaluation"} <= parts
    if algorithm != "fedavg":
        assert "server step" in parts
    if algorithm == "fsl_sage":
        assert "alignment" in parts
    _within(rows)


@pytest.mark.parametrize("algorithm", ["fsl_sage", "sflv1", "fedavg"])
def test_plan_matches_measured_parts_on_the_tiny_gpt2(algorithm: str) -> None:
    pytest.importorskip("transformers")
    e2e = CASES["tiny_gpt2"][1][1].split("=", 1)[1]
    if not Path(e2e).is_dir():
        pytest.skip(f"real data folder {e2e} is absent")
    _within(compare("tiny_gpt2", algorithm))


@pytest.mark.parametrize("algorithm", ["fsl_sage", "sflv1"])
def test_plan_counts_lora_frozen_weights_once_per_process(algorithm: str) -> None:
    """With LoRA the clients (and SplitFed-MS's server copies) share the template's frozen
    base: the plan adds only their own tensors per copy, and still matches what is held."""
    pytest.importorskip("transformers")
    e2e = CASES["tiny_gpt2"][1][1].split("=", 1)[1]
    if not Path(e2e).is_dir():
        pytest.skip(f"real data folder {e2e} is absent")
    from memory_plan import config_for

    from fslsage_ray.memory import plan_memory

    lora = ["model.gpt2.lora_rank=2"]
    _within(compare("tiny_gpt2", algorithm, lora))
    client = plan_memory(config_for("tiny_gpt2", algorithm, lora)).actor("in-process")
    shared = [p for p in client.parts if p.name.startswith("frozen weights: the template's")]
    assert [p.nbytes for p in shared] == [0]


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["fsl_sage", "sflv1", "fedavg"])
def test_plan_matches_measured_parts_on_resnet18(algorithm: str) -> None:
    if not Path(CASES["cifar_resnet18"][1][0].split("=", 1)[1], "cifar10-train.parquet").exists():
        pytest.skip("CIFAR-10 is absent from ../shared/data")
    _within(compare("cifar_resnet18", algorithm))


def test_one_probe_plans_configs_that_differ_only_in_placement(monkeypatch) -> None:
    """`info`, the fit before a run and the run's own plan share one probe per process: a
    config that differs only in placement is planned from it exactly as from its own probe;
    a setting the probe reads (the server's state budget) is a probe of its own."""
    from collections import OrderedDict

    from fslsage_ray.config import load_config, quickstart_path
    from fslsage_ray.memory import estimate

    probes = []

    def counted(*args):
        probes.append(args)
        return probe_steps(*args)

    probe_steps = estimate.probe_steps
    monkeypatch.setattr(estimate, "probe_steps", counted)
    monkeypatch.setattr(estimate, "_PROBED", OrderedDict())
    base = [*SMALL_DIGITS, "runtime.actor_num_gpus=auto", "runtime.gpu_memory_gb=2"]
    placed = ["runtime.num_actors=3", "runtime.actor_num_gpus=0.25", "runtime.gpu_memory_gb=4"]
    first = estimate.memory_planner(load_config(quickstart_path(), base))
    config = load_config(quickstart_path(), [*base, *placed])
    shared = estimate.memory_planner(config)
    assert len(probes) == 1 and shared.probed is first.probed
    assert shared.config == estimate.MemoryPlanner(config).config
    groups = [(0,), (1,), (2,)]
    assert shared.plan(groups) == estimate.MemoryPlanner(config).plan(groups)
    budget = load_config(quickstart_path(), [*base, "runtime.server_state_budget_gb=0.001"])
    assert estimate._probe_key(budget) != estimate._probe_key(config)


def test_plan_memory_prints_a_table_per_actor_kind_and_json_carries_it(capsys) -> None:
    assert main(["plan", "--memory", "run.rounds=1", *SMALL_DIGITS]) == 0
    text = capsys.readouterr().out
    for kind in ("client actor x", "server actor x", "driver x", "peak on CPU"):
        assert kind in text
    assert main(["plan", "--memory", "--json", "run.rounds=1", *SMALL_DIGITS]) == 0
    memory = json.loads(capsys.readouterr().out)["memory"]
    kinds = [a["kind"] for a in memory["actors"]]
    assert kinds == ["client actor", "server actor", "driver"]
    assert all(a["cpu_total"] > a["baseline"] for a in memory["actors"])
