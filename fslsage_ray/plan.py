"""What each round will cost in bytes, computed from sizes alone, before any training.

The simulator's ledger records bytes where messages are actually sent; a test checks that a
real run's ledger equals this plan, so the two keep each other honest.
"""

from __future__ import annotations

from typing import Any

from fslsage_ray.algorithms.authors_ledger import AuthorsView
from fslsage_ray.algorithms.base import ModelSizes
from fslsage_ray.algorithms.ledger import GIB
from fslsage_ray.algorithms.registry import get_algorithm
from fslsage_ray.config import Config
from fslsage_ray.system.events import planned_messages
from fslsage_ray.system.schedule import RoundSchedule


def plan_rounds(
    config: Config,
    client_sizes: list[int],
    sizes: ModelSizes,
    rounds: int,
    authors: AuthorsView | None = None,
) -> dict[str, Any]:
    """{"algorithm", "rounds": [{"round", "bytes": {kind: n}, "total", "gib"}], ...}.

    With `authors`, every round also has "authors_bytes" and "authors_total", the same
    round's messages priced as the authors' code books them (algorithms/authors_ledger.py),
    and "authors_gib_cum"."""
    algorithm = get_algorithm(config)
    out = []
    cumulative = cumulative_all = cumulative_authors = 0
    schedule = RoundSchedule.of(config, len(client_sizes))  # the run's, availability included
    for t in range(rounds):
        chosen = schedule.clients(t)
        members = [client_sizes[c] for c in chosen]
        counts = algorithm.plan_round_bytes(t, members, sizes)
        total = sum(counts.values())
        total_all = sum(algorithm.plan_round_bytes(t, members, sizes.as_if_all()).values())
        cumulative += total
        cumulative_all += total_all
        out.append(
            {
                "round": t,
                "bytes": counts,
                "total": total,
                "gib": total / GIB,
                "gib_cum": cumulative / GIB,
                "gib_cum_if_all": cumulative_all / GIB,  # whole client parts sent
            }
        )
        if authors is not None:
            members_by_id = {c: client_sizes[c] for c in chosen}
            messages = planned_messages(algorithm, t, members_by_id, sizes)
            counts_authors = authors.round_bytes((m.kind, m.nbytes) for m in messages)
            cumulative_authors += sum(counts_authors.values())
            out[-1]["authors_bytes"] = counts_authors
            out[-1]["authors_total"] = sum(counts_authors.values())
            out[-1]["authors_gib_cum"] = cumulative_authors / GIB
    return {
        "algorithm": algorithm.name,
        "num_clients": len(client_sizes),
        "client_sizes": client_sizes,
        "model_bytes": {
            "transfer": config.model.transfer,
            "client_state": sizes.client_state_bytes,
            "server_state": sizes.server_state_bytes,
            "client_state_all": sizes.client_state_all_bytes,
            "server_state_all": sizes.server_state_all_bytes,
            "aux_state": sizes.aux_state_bytes,
            "smashed_per_sample": sizes.payload.smashed,
            "context_per_sample": sizes.payload.context,
            "targets_per_sample": sizes.payload.targets,
        },
        "rounds": out,
    }
