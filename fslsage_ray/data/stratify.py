"""Class-proportional allocation shared by the fixed splits and the subset sampler."""

from __future__ import annotations

import numpy as np


def proportional_counts(class_counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``class_counts`` (largest remainder).

    Never gives a class more than it has, so the result is always realisable.
    """
    class_counts = np.asarray(class_counts, dtype=np.int64)
    n = int(class_counts.sum())
    if total >= n:
        return class_counts.copy()
    exact = class_counts * (total / n)
    counts = np.floor(exact).astype(np.int64)
    short = total - int(counts.sum())
    # Hand the remaining units to the largest fractional parts; ties go to lower class ids.
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:short]] += 1
    return np.minimum(counts, class_counts)
