import numpy as np

from fslsage_ray.data import load_digits_data


def test_digits_shapes_ranges_and_fields():
    bundle = load_digits_data()
    assert bundle.train.images.shape == (1437, 8, 8, 1)
    assert bundle.test.images.shape == (360, 8, 8, 1)
    assert bundle.train.images.dtype == np.uint8 and bundle.train.labels.dtype == np.int64
    assert bundle.train.images.max() == 16 and bundle.test.images.max() <= 16
    assert bundle.num_classes == 10 and bundle.name == "digits"
    assert bundle.augment is False and bundle.max_value == 16
    scaled = bundle.train.images / 16.0
    assert np.isclose(bundle.mean[0], scaled.mean()) and np.isclose(bundle.std[0], scaled.std())
    assert len(bundle.mean) == len(bundle.std) == 1


def test_digits_split_is_stratified_and_fixed():
    first, second = load_digits_data(), load_digits_data()
    assert np.array_equal(first.test.labels, second.test.labels)
    assert np.array_equal(first.train.images, second.train.images)
    test_counts = np.bincount(first.test.labels, minlength=10)
    assert test_counts.min() >= 35 and test_counts.max() <= 37
    all_images = np.concatenate([first.train.images, first.test.images]).reshape(1797, -1)
    from sklearn.datasets import load_digits

    original = load_digits().data.astype(np.uint8)
    # Same multiset of rows: the split neither drops nor duplicates samples.
    assert np.array_equal(np.sort(all_images, axis=0), np.sort(original, axis=0))


def test_digits_other_fraction():
    bundle = load_digits_data(test_fraction=0.5)
    assert len(bundle.test) == 899 and len(bundle.train) == 898


def test_digits_read_without_sklearn_equal_sklearns_own():
    from sklearn.datasets import load_digits

    from fslsage_ray.data.digits import _raw_digits

    images, labels = _raw_digits()
    original = load_digits()
    assert images.tobytes() == original.images.tobytes() and images.dtype == original.images.dtype
    assert np.array_equal(labels, original.target)
