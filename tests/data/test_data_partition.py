import time

import numpy as np
import pytest

from fslsage_ray.data import (
    DataError,
    class_histogram,
    client_sizes,
    partition_dirichlet,
    partition_iid,
    partition_shards,
)

LABELS = np.tile(np.arange(10), 200)  # 2000 samples, 200 per class


def _mean_max_fraction(hist: np.ndarray) -> float:
    return float((hist.max(axis=1) / hist.sum(axis=1)).mean())


def _mean_kl_to_uniform(hist: np.ndarray) -> float:
    p = hist / hist.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p * hist.shape[1]), 0.0)
    return float(terms.sum(axis=1).mean())


SPLITTERS = {
    "iid": lambda labels, m, seed: partition_iid(labels, m, seed),
    "dirichlet": lambda labels, m, seed: partition_dirichlet(labels, m, 0.5, seed),
    "shards": lambda labels, m, seed: partition_shards(labels, m, 2, seed),
}


def test_client_sizes_are_as_equal_as_possible():
    assert client_sizes(10, 3).tolist() == [4, 3, 3]
    assert client_sizes(12, 4).tolist() == [3, 3, 3, 3]
    assert client_sizes(5, 5).tolist() == [1] * 5
    sizes = client_sizes(50_003, 7)
    assert sizes.sum() == 50_003 and sizes.max() - sizes.min() == 1


@pytest.mark.parametrize(("n", "m", "message"), [(3, 4, "more clients"), (3, 0, ">= 1")])
def test_client_sizes_rejects_bad_counts(n, m, message):
    with pytest.raises(DataError, match=message):
        client_sizes(n, m)


@pytest.mark.parametrize("kind", sorted(SPLITTERS))
def test_parts_are_disjoint_and_cover_everything(kind):
    parts = SPLITTERS[kind](LABELS, 7, seed=3)
    assert len(parts) == 7
    joined = np.concatenate(parts)
    assert len(joined) == len(LABELS)
    assert np.array_equal(np.sort(joined), np.arange(len(LABELS)))
    assert all(p.dtype == np.int64 for p in parts)


@pytest.mark.parametrize("kind", ["iid", "dirichlet"])
def test_sizes_are_exactly_client_sizes(kind):
    parts = SPLITTERS[kind](LABELS[:1999], 7, seed=1)
    assert [len(p) for p in parts] == client_sizes(1999, 7).tolist()


@pytest.mark.parametrize("kind", sorted(SPLITTERS))
def test_same_seed_same_split_and_other_seed_differs(kind):
    first = SPLITTERS[kind](LABELS, 5, seed=11)
    again = SPLITTERS[kind](LABELS, 5, seed=11)
    other = SPLITTERS[kind](LABELS, 5, seed=12)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_iid_parts_have_roughly_every_class():
    hist = class_histogram(LABELS, partition_iid(LABELS, 4, seed=0), 10)
    assert hist.min() > 20  # 50 expected per client and class


def test_dirichlet_small_alpha_is_skewed_and_large_alpha_near_uniform():
    labels = np.tile(np.arange(10), 2000)  # 20000 samples
    skewed = [
        class_histogram(labels, partition_dirichlet(labels, 10, 0.1, s), 10) for s in range(5)
    ]
    middle = [
        class_histogram(labels, partition_dirichlet(labels, 10, 1.0, s), 10) for s in range(5)
    ]
    flat = [class_histogram(labels, partition_dirichlet(labels, 10, 1e4, s), 10) for s in range(5)]
    skewed_max = np.mean([_mean_max_fraction(h) for h in skewed])
    middle_max = np.mean([_mean_max_fraction(h) for h in middle])
    flat_max = np.mean([_mean_max_fraction(h) for h in flat])
    # Uniform mixes would give 0.1; Dir(0.1) over 10 classes puts most mass on one class.
    assert skewed_max > 0.5
    assert 0.2 < middle_max < skewed_max
    assert flat_max < 0.13
    assert np.mean([_mean_kl_to_uniform(h) for h in skewed]) > 0.8
    assert np.mean([_mean_kl_to_uniform(h) for h in flat]) < 0.01


def test_dirichlet_follows_each_clients_own_proportions():
    # With alpha tiny every p_i is one-hot in practice, so client 0 (filled first, nothing
    # exhausted yet, class size == client size) must get a single class.
    hist = class_histogram(LABELS, partition_dirichlet(LABELS, 10, 1e-3, seed=4), 10)
    assert hist[0].max() == hist[0].sum() == 200


def test_dirichlet_handles_a_rare_class_running_out():
    labels = np.concatenate([np.zeros(3, np.int64), np.ones(400, np.int64), np.full(400, 2)])
    for seed in range(10):
        for alpha in (1e-3, 0.1, 1.0):
            parts = partition_dirichlet(labels, 4, alpha, seed)
            assert [len(p) for p in parts] == client_sizes(len(labels), 4).tolist()
            hist = class_histogram(labels, parts, 3)
            assert hist.sum(axis=0).tolist() == [3, 400, 400]


def test_dirichlet_falls_back_when_a_clients_classes_are_all_used_up():
    # Client 0 wants only one class but that class has too few images for it.
    labels = np.concatenate([np.zeros(5, np.int64), np.ones(95, np.int64)])
    for seed in range(20):
        parts = partition_dirichlet(labels, 2, 1e-4, seed)
        assert [len(p) for p in parts] == [50, 50]


def test_dirichlet_skips_class_ids_with_no_samples():
    labels = np.array([0, 0, 2, 2, 5, 5] * 10)
    hist = class_histogram(labels, partition_dirichlet(labels, 3, 0.5, seed=0), 6)
    assert hist[:, [1, 3, 4]].sum() == 0


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan")])
def test_dirichlet_rejects_non_positive_alpha(alpha):
    with pytest.raises(DataError, match="alpha must be > 0"):
        partition_dirichlet(LABELS, 4, alpha, seed=0)


def test_dirichlet_is_fast_for_cifar_sized_data():
    labels = np.tile(np.arange(10), 5000)
    start = time.perf_counter()
    partition_dirichlet(labels, 10, 0.1, seed=0)
    assert time.perf_counter() - start < 2.0


def test_partitions_reject_more_clients_than_samples():
    with pytest.raises(DataError, match="more clients"):
        partition_iid(np.arange(3), 4, seed=0)
    with pytest.raises(DataError, match="more clients"):
        partition_dirichlet(np.arange(3), 4, 1.0, seed=0)


def test_shards_give_each_client_few_classes():
    labels = np.tile(np.arange(10), 100)  # 10 shards of 100 line up with the classes
    parts = partition_shards(labels, 5, 2, seed=0)
    hist = class_histogram(labels, parts, 10)
    assert ((hist > 0).sum(axis=1) <= 2).all()
    assert [len(p) for p in parts] == [200] * 5


def test_shards_reject_bad_counts():
    with pytest.raises(DataError, match="shards_per_client"):
        partition_shards(LABELS, 4, 0, seed=0)
    with pytest.raises(DataError, match="shards"):
        partition_shards(np.arange(10) % 3, 4, 3, seed=0)


@pytest.mark.parametrize("labels", [np.array([0.0, 1.0]), np.array([[0, 1]]), np.array([0, -1])])
def test_bad_labels_are_rejected(labels):
    with pytest.raises(DataError, match="labels"):
        partition_iid(labels, 1, seed=0)


def test_class_histogram_counts_per_client():
    labels = np.array([0, 1, 1, 2, 2, 2])
    hist = class_histogram(labels, [np.array([0, 1]), np.array([2, 3, 4, 5])], 4)
    assert hist.tolist() == [[1, 1, 0, 0], [0, 1, 3, 0]]
