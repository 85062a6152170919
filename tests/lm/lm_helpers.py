"""A tiny split GPT-2 on a slice of the real E2E data, for end-to-end language-model runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fslsage_ray.config import load_config
from fslsage_ray.simulation import Simulation

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download at test time

E2E = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "e2e"

TINY = [
    "data.name=e2e",
    f"data.data_dir={E2E}",
    "data.seq_len=64",
    "data.vocab_size=1024",
    "data.train_subset=300",
    "data.test_subset=60",
    "model.name=gpt2",
    "model.gpt2.n_layer=2",
    "model.gpt2.n_embd=32",
    "model.gpt2.n_head=2",
    "model.gpt2.n_positions=64",
    "model.gpt2.aux_blocks=1",
    "model.gpt2.lora_rank=0",
    "optim.name=adamw",
    "optim.lr=0.005",
    "optim.weight_decay=0.01",
    "optim.schedule=linear",
    "optim.warmup_steps=5",
    "optim.label_smoothing=0.1",
    "algorithm.num_clients=3",
    "algorithm.batch_size=10",
    "algorithm.upload_every=2",
    "alignment.every=2",
    "alignment.epochs=3",
    "alignment.batch_size=20",
    "alignment.buffer_size=40",
    "run.rounds=4",
    "run.eval_batch_size=30",
    "run.checkpoint_every=0",
    "runtime.actor_num_cpus=0.5",
    "runtime.server_num_cpus=0.5",
]


def need_e2e() -> None:
    pytest.importorskip("transformers")
    if not E2E.is_dir():
        pytest.skip(f"real data folder {E2E} is absent (see ../shared/data/README.md)")


def run_tiny(
    run_dir: Path, *extra: str, resume: bool = False, allow_data_change: bool = False
) -> list[dict]:
    if resume:
        sim = Simulation.resume(
            run_dir, list(extra), progress=False, allow_data_change=allow_data_change
        )
    else:
        config = load_config(None, [*TINY, *extra])
        sim = Simulation(config, run_dir=run_dir, progress=False)
    return sim.run().to_pylist()
