import numpy as np
import pytest

from fslsage_ray.data import DataBundle, DataError, ImageData


def _split(n: int = 4, c: int = 3, labels=None) -> ImageData:
    labels = np.arange(n, dtype=np.int64) % 2 if labels is None else labels
    return ImageData(np.zeros((n, 2, 2, c), np.uint8), labels)


def _bundle(**overrides) -> DataBundle:
    fields = dict(
        train=_split(),
        test=_split(2),
        num_classes=2,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        augment=False,
        max_value=255.0,
        name="toy",
    )
    fields.update(overrides)
    return DataBundle(**fields)


def test_valid_split_and_bundle():
    data = _split()
    assert len(data) == 4 and data.image_shape == (2, 2, 3)
    assert _bundle().image_shape == (2, 2, 3)


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.zeros((2, 2, 2, 3), np.float32), np.zeros(2, np.int64), "uint8"),
        (np.zeros((2, 2, 2), np.uint8), np.zeros(2, np.int64), r"\(N, H, W, C\)"),
        (np.zeros((2, 2, 2, 3), np.uint8), np.zeros(2, np.int32), "int64"),
        (np.zeros((2, 2, 2, 3), np.uint8), np.zeros((2, 1), np.int64), r"\(N,\)"),
        (np.zeros((2, 2, 2, 3), np.uint8), np.zeros(3, np.int64), "2 images but 3 labels"),
    ],
)
def test_image_data_validates(images, labels, message):
    with pytest.raises(DataError, match=message):
        ImageData(images, labels)


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"test": _split(2, c=1)}, "test images are"),
        ({"mean": (0.5,)}, "one per channel"),
        ({"std": (0.2, 0.0, 0.2)}, "positive"),
        ({"max_value": 0.0}, "max_value"),
        ({"num_classes": 0}, "num_classes"),
        ({"train": _split(labels=np.array([0, 1, 2, 1]))}, r"toy train: label 2 at row 2"),
    ],
)
def test_bundle_validates(overrides, message):
    with pytest.raises(DataError, match=message):
        _bundle(**overrides)
