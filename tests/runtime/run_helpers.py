"""Small digits runs and exact comparison of their learning metrics."""

from __future__ import annotations

import math
from pathlib import Path

from fslsage_ray.config import load_config
from fslsage_ray.outputs.metrics import TIMING_COLUMNS
from fslsage_ray.simulation import Simulation

SMALL = [
    "algorithm.num_clients=5",
    "algorithm.batch_size=32",
    "algorithm.upload_every=2",
    "alignment.every=2",  # rounds 0, 2, 4 align
    "alignment.epochs=5",
    "data.train_subset=600",
    "data.test_subset=200",
    "runtime.actor_num_cpus=0.5",
    "runtime.server_num_cpus=0.5",
]


def run_small(run_dir: Path, *extra: str) -> list[dict]:
    config = load_config(None, [*SMALL, *extra])
    return Simulation(config, run_dir=run_dir, progress=False).run().to_pylist()


def learning_columns(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]


def assert_same_learning(a: list[dict], b: list[dict]) -> None:
    """Bit-for-bit equality of every learning metric (NaN equals NaN)."""
    a, b = learning_columns(a), learning_columns(b)
    assert len(a) == len(b), (len(a), len(b))
    for ra, rb in zip(a, b, strict=True):
        for key in ra:
            x, y = ra[key], rb[key]
            if isinstance(x, float) and math.isnan(x) and math.isnan(y):
                continue
            assert x == y, f"round {ra['round']} {key}: {x!r} != {y!r}"
