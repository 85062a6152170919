import numpy as np
import pytest

from fslsage_ray.data import DataError, ImageData, take_subset


def _indexed(labels: np.ndarray) -> ImageData:
    """Images whose first pixel holds the row number (mod 256), to check rows stay paired."""
    images = np.zeros((len(labels), 2, 2, 1), np.uint8)
    images[:, 0, 0, 0] = np.arange(len(labels)) % 256
    return ImageData(images, labels.astype(np.int64))


def test_none_or_large_n_returns_data_unchanged():
    data = _indexed(np.arange(20) % 4)
    assert take_subset(data, None, seed=0) is data
    assert take_subset(data, 20, seed=0) is data
    assert take_subset(data, 500, seed=0) is data


@pytest.mark.parametrize("n", [0, -3])
def test_n_below_one_is_rejected(n):
    with pytest.raises(DataError, match=">= 1"):
        take_subset(_indexed(np.arange(20) % 4), n, seed=0)


def test_subset_is_balanced_and_keeps_rows_paired():
    data = _indexed(np.arange(200) % 4)
    sub = take_subset(data, 42, seed=1)
    assert len(sub) == 42
    counts = np.bincount(sub.labels, minlength=4)
    assert counts.max() - counts.min() <= 1
    rows = sub.images[:, 0, 0, 0].astype(np.int64)
    assert np.array_equal(data.labels[rows], sub.labels)
    assert np.all(np.diff(rows) > 0)  # original order kept


def test_subset_balances_around_a_small_class():
    labels = np.concatenate([np.zeros(3), np.ones(100), np.full(100, 2)]).astype(np.int64)
    counts = np.bincount(take_subset(_indexed(labels), 41, seed=0).labels, minlength=3)
    assert counts.tolist() == [3, 19, 19]


def test_subset_is_deterministic_per_seed():
    data = _indexed(np.arange(200) % 4)
    a, b = take_subset(data, 30, seed=5), take_subset(data, 30, seed=5)
    c = take_subset(data, 30, seed=6)
    assert np.array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
