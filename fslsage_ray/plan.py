"""What each round will cost in bytes, computed from sizes alone, before any training.

The simulator's ledger records bytes where messages are actually sent; a test checks that a
real run's ledger equals this plan, so the two keep each other honest.
"""

from __future__ import annotations

from typing import Any

from fslsage_ray.algorithms import fsl_sage
from fslsage_ray.algorithms.ledger import GIB
from fslsage_ray.config import Config
from fslsage_ray.experiment import ModelSizes


def plan_rounds(
    config: Config, client_sizes: list[int], sizes: ModelSizes, rounds: int
) -> dict[str, Any]:
    """{"algorithm", "rounds": [{"round", "bytes": {kind: n}, "total", "gib"}], ...}."""
    out = []
    cumulative = 0
    for t in range(rounds):
        counts = fsl_sage.plan_round_bytes(
            t,
            client_sizes,
            config.algorithm,
            sizes.client_state_bytes,
            sizes.aux_state_bytes,
            sizes.smashed_sample_bytes,
            config.run.count_labels,
        )
        total = sum(counts.values())
        cumulative += total
        out.append(
            {
                "round": t,
                "bytes": counts,
                "total": total,
                "gib": total / GIB,
                "gib_cum": cumulative / GIB,
            }
        )
    return {
        "algorithm": config.algorithm.name,
        "num_clients": len(client_sizes),
        "client_sizes": client_sizes,
        "model_bytes": {
            "client_state": sizes.client_state_bytes,
            "aux_state": sizes.aux_state_bytes,
            "smashed_per_sample": sizes.smashed_sample_bytes,
        },
        "rounds": out,
    }
