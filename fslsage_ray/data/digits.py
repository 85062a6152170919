"""scikit-learn's bundled 8x8 digits: a tiny offline data set for smoke tests and CI."""

from __future__ import annotations

import gzip
import importlib.util
import math
from pathlib import Path

import numpy as np

from fslsage_ray.data.dataset import DataBundle, DataError, ImageData
from fslsage_ray.data.stratify import proportional_counts

DIGITS_MAX_VALUE = 16.0
_SPLIT_SEED = 0  # fixed so the train/test split never depends on the experiment seed


def _digits_file() -> Path | None:
    """scikit-learn's bundled digits.csv.gz, found without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images 8x8 as float, labels): the rows `sklearn.datasets.load_digits` returns.

    Its CSV is read directly because importing scikit-learn costs a second or more of
    start-up; if the file is not where it used to be, scikit-learn reads it.
    """
    path = _digits_file()
    if path is not None:
        with gzip.open(path, mode="rt", encoding="utf-8") as handle:
            data = np.loadtxt(handle, delimiter=",")
        return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)
    from sklearn.datasets import load_digits

    raw = load_digits()
    return raw.images, raw.target


def _stratified_test_indices(labels: np.ndarray, n_test: int) -> np.ndarray:
    """Pick ``n_test`` indices with each class represented in proportion, always the same."""
    rng = np.random.default_rng(_SPLIT_SEED)
    classes, class_counts = np.unique(labels, return_counts=True)
    per_class = proportional_counts(class_counts, n_test)
    chosen = [
        rng.permutation(np.flatnonzero(labels == cls))[:k]
        for cls, k in zip(classes, per_class, strict=True)
    ]
    return rng.permutation(np.concatenate(chosen))


def load_digits_data(test_fraction: float = 0.2) -> DataBundle:
    """Load the 1797 digits as uint8 (N, 8, 8, 1) images with a fixed stratified split.

    The split is seed-independent so results from different experiment seeds stay comparable.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    raw_images, raw_labels = _raw_digits()
    images = raw_images.astype(np.uint8)[..., np.newaxis]  # values are integers 0..16
    labels = raw_labels.astype(np.int64)
    n = len(labels)
    n_test = math.ceil(n * test_fraction)
    if not 1 <= n_test < n:
        raise DataError(f"test_fraction {test_fraction} leaves an empty split of {n} samples")

    test_idx = _stratified_test_indices(labels, n_test)
    is_test = np.zeros(n, dtype=bool)
    is_test[test_idx] = True
    train_idx = np.random.default_rng(_SPLIT_SEED + 1).permutation(np.flatnonzero(~is_test))

    train = ImageData(images[train_idx], labels[train_idx])
    test = ImageData(images[test_idx], labels[test_idx])
    scaled = train.images.astype(np.float64) / DIGITS_MAX_VALUE
    return DataBundle(
        train=train,
        test=test,
        num_classes=10,
        mean=(float(scaled.mean()),),
        std=(float(scaled.std()),),
        augment=False,
        max_value=DIGITS_MAX_VALUE,
        name="digits",
    )
