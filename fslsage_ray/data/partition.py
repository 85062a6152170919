"""Split sample indices among federated clients (IID, Dirichlet non-IID, label shards).

Everything works on labels and returns index arrays, so images are never copied here.
"""

from __future__ import annotations

import numpy as np

from fslsage_ray.data.dataset import DataError


def _as_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and labels.min() < 0:
        raise DataError(f"labels must be non-negative, found {int(labels.min())}")
    return labels.astype(np.int64, copy=False)


def client_sizes(n: int, m: int) -> np.ndarray:
    """Sizes summing to ``n``, as equal as possible; the first ``n % m`` clients get one more."""
    if m < 1:
        raise DataError(f"number of clients (m) must be >= 1, got {m}")
    if m > n:
        raise DataError(f"more clients (m={m}) than samples (n={n})")
    sizes = np.full(m, n // m, dtype=np.int64)
    sizes[: n % m] += 1
    return sizes


def _cut(order: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    return [part.copy() for part in np.split(order, np.cumsum(sizes)[:-1])]


def partition_iid(labels: np.ndarray, m: int, seed: int) -> list[np.ndarray]:
    """Shuffle all indices and cut them into ``client_sizes`` pieces."""
    labels = _as_labels(labels)
    sizes = client_sizes(len(labels), m)
    order = np.random.default_rng(seed).permutation(len(labels))
    return _cut(order, sizes)


def _class_pools(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """All indices grouped by class, shuffled within each class, plus each class's start."""
    shuffled = rng.permutation(len(labels))
    pooled = shuffled[np.argsort(labels[shuffled], kind="stable")]
    counts = np.bincount(labels)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return pooled, starts


def _draw_classes(
    probs: np.ndarray, alive: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """``k`` class draws from ``probs`` renormalised over the ``alive`` classes.

    If the client's probability mass on every remaining class is zero (possible for tiny
    alpha), it falls back to uniform over the remaining classes.
    """
    weights = np.where(alive, probs, 0.0)
    if not weights.sum() > 0.0:
        weights = alive.astype(np.float64)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    # side="right" never lands on a zero-weight class; u < 1 keeps it inside the array.
    return np.searchsorted(cdf, rng.random(k), side="right")


def _first_exhaustion(draws: np.ndarray, left: np.ndarray) -> int | None:
    """Position of the draw that takes some class's last image first, or None."""
    order = np.argsort(draws, kind="stable")
    counts = np.bincount(draws, minlength=len(left))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    hit = np.flatnonzero((counts >= left) & (left > 0))
    if hit.size == 0:
        return None
    return int(order[starts[hit] + left[hit] - 1].min())


def _rank_within_class(draws: np.ndarray) -> np.ndarray:
    """For each draw, how many earlier draws chose the same class."""
    order = np.argsort(draws, kind="stable")
    sorted_draws = draws[order]
    group_start = np.flatnonzero(np.r_[True, sorted_draws[1:] != sorted_draws[:-1]])
    group_len = np.diff(np.r_[group_start, len(draws)])
    ranks = np.empty(len(draws), dtype=np.int64)
    ranks[order] = np.arange(len(draws)) - np.repeat(group_start, group_len)
    return ranks


def partition_dirichlet(labels: np.ndarray, m: int, alpha: float, seed: int) -> list[np.ndarray]:
    """Non-IID split: each client samples its images' classes from its own p_i ~ Dir(alpha).

    Procedure (fixed, so results are comparable across implementations):

    1. Each class's images are shuffled once with ``seed``.
    2. Every client draws p_i ~ Dir(alpha) over all classes 0..max(label).
    3. Clients are filled one after another (client 0 completely, then client 1, ...), each
       to its ``client_sizes`` size. Each sample draws a class from p_i and takes that
       class's next unused image. A class that runs out is removed for everyone, and the
       remaining classes' probabilities are renormalised.

    Filling sequentially means later clients see fewer classes when data runs short; this
    is the documented choice. Draws are made in blocks up to the next exhaustion, which has
    the same distribution as one-at-a-time sampling but is vectorised.
    """
    labels = _as_labels(labels)
    if not (np.isfinite(alpha) and alpha > 0):
        raise DataError(f"Dirichlet alpha must be > 0, got {alpha}")
    sizes = client_sizes(len(labels), m)
    rng = np.random.default_rng(seed)
    pooled, starts = _class_pools(labels, rng)
    num_classes = int(labels.max()) + 1
    proportions = rng.dirichlet(np.full(num_classes, float(alpha)), size=m)
    left = np.bincount(labels, minlength=num_classes)
    used = np.zeros(num_classes, dtype=np.int64)

    parts = []
    for client, size in enumerate(sizes):
        taken: list[np.ndarray] = []
        need = int(size)
        while need > 0:
            draws = _draw_classes(proportions[client], left > 0, need, rng)
            stop = _first_exhaustion(draws, left)
            if stop is not None:
                draws = draws[: stop + 1]
            picked = pooled[starts[draws] + used[draws] + _rank_within_class(draws)]
            counts = np.bincount(draws, minlength=num_classes)
            used += counts
            left -= counts
            taken.append(picked)
            need -= len(draws)
        parts.append(np.concatenate(taken))
    return parts


def partition_shards(
    labels: np.ndarray, m: int, shards_per_client: int, seed: int
) -> list[np.ndarray]:
    """Pathological non-IID split: sort by label, cut into shards, deal shards at random.

    Shards are as equal as possible, so client sizes differ by at most ``shards_per_client``.
    """
    labels = _as_labels(labels)
    if shards_per_client < 1:
        raise DataError(f"shards_per_client must be >= 1, got {shards_per_client}")
    num_shards = m * shards_per_client
    if m >= 1 and num_shards > len(labels):
        raise DataError(
            f"{num_shards} shards (m={m} x {shards_per_client}) but only {len(labels)} samples"
        )
    client_sizes(len(labels), m)  # validates m
    rng = np.random.default_rng(seed)
    pooled, _ = _class_pools(labels, rng)  # by label; random order within each label
    shards = _cut(pooled, client_sizes(len(labels), num_shards))
    dealt = rng.permutation(num_shards).reshape(m, shards_per_client)
    return [np.concatenate([shards[s] for s in row]) for row in dealt]


def class_histogram(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> np.ndarray:
    """Per-client class counts, shape (m, num_classes)."""
    labels = _as_labels(labels)
    return np.stack(
        [np.bincount(labels[idx], minlength=num_classes)[:num_classes] for idx in parts]
    )
