"""The probe set: a few hundred of the clients' training examples, drawn once per run."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fslsage_ray.seeding import derive_seed
from fslsage_ray.tasks.base import Arrays


def probe_rows(parts: Sequence[np.ndarray], size: int, seed: int) -> np.ndarray:
    """Sorted training rows, `size` of them (or every client row when fewer), drawn without
    replacement from the rows the clients hold; its own stream of the run seed, so drawing
    it consumes no random number that training uses."""
    held = np.unique(np.concatenate([np.asarray(p, dtype=np.int64) for p in parts]))
    rng = np.random.default_rng(derive_seed(seed, "probes", "set"))
    if len(held) <= size:
        return held
    return np.sort(rng.choice(held, size=size, replace=False))


def probe_set(train: Arrays, parts: Sequence[np.ndarray], size: int, seed: int) -> Arrays:
    """The probe examples themselves: every array of the training split at `probe_rows`."""
    idx = probe_rows(parts, size, seed)
    return {name: np.ascontiguousarray(values[idx]) for name, values in train.items()}
