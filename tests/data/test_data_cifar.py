import time

import numpy as np
import pytest

from fslsage_ray.data import DataError, load_cifar
from fslsage_ray.data.cifar import IMAGENET_MEAN, IMAGENET_STD


def test_unknown_name_is_rejected(tmp_path):
    with pytest.raises(DataError, match="unknown CIFAR"):
        load_cifar("cifar11", str(tmp_path))


def test_offline_without_files_names_both_options(tmp_path):
    with pytest.raises(DataError) as err:
        load_cifar("cifar100", str(tmp_path), download=False)
    message = str(err.value)
    assert str(tmp_path / "cifar100-train.parquet") in message
    assert "torchvision" in message and "download=True" in message


def test_local_parquet_files_are_preferred(tmp_path, write_parquet, imgs):
    images = imgs.random(4, 32, 32)
    for split in ("train", "test"):
        write_parquet(
            {"image": [imgs.encode(a) for a in images], "label": [0, 99, 5, 42]},
            name=f"cifar100-{split}.parquet",
        )
    bundle = load_cifar("cifar100", str(tmp_path), download=False)
    assert bundle.name == "cifar100" and bundle.num_classes == 100
    assert np.array_equal(bundle.train.images, images)
    assert bundle.test.labels.tolist() == [0, 99, 5, 42]
    assert bundle.mean == IMAGENET_MEAN and bundle.std == IMAGENET_STD
    assert bundle.augment is True and bundle.max_value == 255


def test_parquet_images_must_be_32x32(tmp_path, write_parquet, imgs):
    for split in ("train", "test"):
        write_parquet(
            {"image": [imgs.encode(imgs.random(1, 8, 8)[0])], "label": [0]},
            name=f"cifar10-{split}.parquet",
        )
    with pytest.raises(DataError, match="32x32 was expected"):
        load_cifar("cifar10", str(tmp_path), download=False)


@pytest.fixture(scope="module")
def real_cifar10(shared_data):
    if not (shared_data / "cifar10-train.parquet").is_file():
        pytest.skip(f"CIFAR-10 parquet files are absent from {shared_data}")
    start = time.perf_counter()
    bundle = load_cifar("cifar10", str(shared_data), download=False)
    print(f"decoded CIFAR-10 train+test in {time.perf_counter() - start:.1f} s")
    return bundle


def test_real_cifar10_shapes_and_labels(real_cifar10):
    assert real_cifar10.train.images.shape == (50_000, 32, 32, 3)
    assert real_cifar10.test.images.shape == (10_000, 32, 32, 3)
    assert np.bincount(real_cifar10.train.labels).tolist() == [5000] * 10
    assert np.bincount(real_cifar10.test.labels).tolist() == [1000] * 10


def test_real_cifar10_test_mean_matches_published(real_cifar10):
    mean = real_cifar10.test.images.reshape(-1, 3).mean(axis=0) / 255.0
    assert np.allclose(mean, (0.494, 0.485, 0.450), atol=2e-3)


def test_real_cifar10_class_names(shared_data):
    from fslsage_ray.data import classes_from_metadata

    names = classes_from_metadata(shared_data / "cifar10-test.parquet")
    assert names is not None and names[0] == "airplane" and names[-1] == "truck"
    assert len(names) == 10
