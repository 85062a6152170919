"""Which clients take part in a round: all, a count, or a fraction, drawn from the seed.

The draw depends only on (seed, round), so a resumed or re-laid-out run picks the same
clients, and `plan` can predict every round's bytes.
"""

from __future__ import annotations

import math

import numpy as np

from fslsage_ray.seeding import derive_seed


def participant_count(num_clients: int, clients_per_round: int | float | None) -> int:
    """An int is a count; a float in (0, 1] is a fraction (at least one client)."""
    if clients_per_round is None:
        return num_clients
    if isinstance(clients_per_round, float):
        return max(1, math.floor(clients_per_round * num_clients + 1e-9))
    return min(clients_per_round, num_clients)


def participants(
    round_idx: int, num_clients: int, clients_per_round: int | float | None, seed: int
) -> list[int]:
    k = participant_count(num_clients, clients_per_round)
    if k == num_clients:
        return list(range(num_clients))
    rng = np.random.default_rng(derive_seed(seed, "participants", round_idx))
    return sorted(int(c) for c in rng.choice(num_clients, size=k, replace=False))
