"""Smaller, class-balanced training sets for quick runs and ablations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fslsage_ray.data.dataset import DataError, ImageData

if TYPE_CHECKING:
    from fslsage_ray.config.schema import Config

SPLIT_SEED_OFFSET = {"train": 0, "test": 1}  # the two splits draw their subsets independently


def balanced_counts(class_counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """How many samples to take per class: as equal as possible, capped by what each has.

    Classes too small for an equal share give all they have and the rest is spread over the
    others (water-filling); the last few leftover units go to randomly chosen classes so no
    class id is favoured.
    """
    class_counts = np.asarray(class_counts, dtype=np.int64)
    take = np.zeros_like(class_counts)
    remaining = n
    open_classes = [int(c) for c in np.argsort(class_counts, kind="stable") if class_counts[c] > 0]
    while open_classes:
        share = remaining // len(open_classes)
        smallest = open_classes[0]
        if class_counts[smallest] <= share:
            take[smallest] = class_counts[smallest]
            remaining -= int(class_counts[smallest])
            open_classes.pop(0)
            continue
        # Every open class can give `share`; those above it can give one more.
        take[open_classes] = share
        leftover = remaining - share * len(open_classes)
        lucky = rng.choice(np.asarray(open_classes), size=leftover, replace=False)
        take[lucky] += 1
        break
    return take


def subset_rows(keys: np.ndarray, n: int | None, seed: int) -> np.ndarray | None:
    """Rows of a deterministic subset of ``n`` samples, balanced over ``keys`` (classes or
    groups) as far as the data allows, in their original order; None: keep every row."""
    if n is not None and n < 1:
        raise DataError(f"subset size must be >= 1, got {n}")
    if n is None or n >= len(keys):
        return None
    rng = np.random.default_rng(seed)
    counts = np.bincount(keys)
    take = balanced_counts(counts, n, rng)
    chosen = [
        rng.choice(np.flatnonzero(keys == cls), size=int(k), replace=False)
        for cls, k in enumerate(take)
        if k > 0
    ]
    return np.sort(np.concatenate(chosen))


def config_subset(keys: np.ndarray, config: Config, split: str) -> np.ndarray | None:
    """The rows `data.train_subset` / `data.test_subset` keep of a split (None: all).

    Choosing again among the rows already kept keeps them all, so a source may apply this
    before decoding (decoding only what the run uses) and experiment.load_data after it.
    """
    n = config.data.train_subset if split == "train" else config.data.test_subset
    return subset_rows(keys, n, config.run.seed + SPLIT_SEED_OFFSET[split])


def take_subset(data: ImageData, n: int | None, seed: int) -> ImageData:
    """A deterministic, class-balanced subset of an image split (``data`` when n is None or
    at least the split's size)."""
    rows = subset_rows(data.labels, n, seed)
    if rows is None:
        return data
    return ImageData(images=data.images[rows], labels=data.labels[rows])
