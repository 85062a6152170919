import numpy as np
import pyarrow as pa
import pytest

from fslsage_ray.data import DataError, classes_from_metadata, load_parquet_images


def test_png_round_trip_is_exact(write_parquet, imgs):
    images = imgs.random(6)
    path = write_parquet({"image": [imgs.encode(a) for a in images], "label": [0, 1, 2, 0, 1, 2]})
    data = load_parquet_images(path, num_classes=3)
    assert data.images.dtype == np.uint8 and data.images.shape == (6, 4, 5, 3)
    assert np.array_equal(data.images, images)
    assert data.labels.dtype == np.int64 and data.labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_jpeg_decodes_to_rgb_nhwc(write_parquet, imgs):
    images = imgs.random(3, 8, 8)
    path = write_parquet({"image": [imgs.encode(a, "JPEG") for a in images], "label": [1, 1, 0]})
    assert load_parquet_images(path, expected_hw=(8, 8)).images.shape == (3, 8, 8, 3)


def test_grayscale_stays_one_channel(write_parquet, imgs):
    images = imgs.random(3, c=1)
    path = write_parquet({"image": [imgs.encode(a) for a in images], "label": [0, 0, 1]})
    data = load_parquet_images(path)
    assert data.images.shape == (3, 4, 5, 1)
    assert np.array_equal(data.images[..., 0], images)


def test_mixed_grayscale_and_colour_become_rgb(write_parquet, imgs):
    gray, colour = imgs.random(1, c=1)[0], imgs.random(1)[0]
    path = write_parquet({"image": [imgs.encode(gray), imgs.encode(colour)], "label": [0, 1]})
    data = load_parquet_images(path)
    assert data.images.shape == (2, 4, 5, 3)
    assert np.array_equal(data.images[0], np.repeat(gray[..., None], 3, axis=2))
    assert np.array_equal(data.images[1], colour)


def test_custom_column_names_and_struct_image_column(write_parquet, imgs):
    images = imgs.random(2)
    struct = pa.array(
        [{"bytes": imgs.encode(a), "path": f"{i}.png"} for i, a in enumerate(images)],
    )
    path = write_parquet({"img": struct, "y": pa.array([3, 4], pa.int8())})
    data = load_parquet_images(path, image_column="img", label_column="y", num_classes=5)
    assert np.array_equal(data.images, images) and data.labels.tolist() == [3, 4]


def test_classes_from_metadata(write_parquet, imgs):
    cols = {"image": [imgs.encode(imgs.random(1)[0])], "label": [0]}
    with_names = write_parquet(cols, "a.parquet", {"classes": "cat, dog,bird"})
    without = write_parquet(cols, "b.parquet")
    assert classes_from_metadata(with_names) == ["cat", "dog", "bird"]
    assert classes_from_metadata(without) is None


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "train.parquet"
    with pytest.raises(DataError, match="not found") as err:
        load_parquet_images(path)
    assert str(path) in str(err.value)


def test_corrupt_parquet_is_reported(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(DataError, match="cannot read parquet"):
        load_parquet_images(path)


def test_missing_column_lists_the_columns_present(write_parquet):
    path = write_parquet({"pixels": [b"x"], "label": [0]})
    with pytest.raises(DataError, match=r"missing column.*'image'.*present.*'pixels', 'label'"):
        load_parquet_images(path)


def test_undecodable_image_gives_its_row(write_parquet, imgs):
    good = imgs.encode(imgs.random(1)[0])
    path = write_parquet({"image": [good, good, b"\xff\xd8 broken jpeg"], "label": [0, 0, 0]})
    with pytest.raises(DataError, match="row 2: cannot decode"):
        load_parquet_images(path)


def test_truncated_image_is_caught(write_parquet, imgs):
    good = imgs.encode(imgs.random(1, 16, 16)[0], "JPEG")
    path = write_parquet({"image": [good, good[: len(good) // 2]], "label": [0, 0]})
    with pytest.raises(DataError, match="row 1"):
        load_parquet_images(path)


def test_null_image_gives_its_row(write_parquet, imgs):
    good = imgs.encode(imgs.random(1)[0])
    path = write_parquet({"image": pa.array([good, None], pa.binary()), "label": [0, 1]})
    with pytest.raises(DataError, match="row 1: image is missing"):
        load_parquet_images(path)


def test_images_of_different_sizes_are_rejected(write_parquet, imgs):
    small, big = imgs.random(1, 4, 4)[0], imgs.random(1, 5, 5)[0]
    path = write_parquet(
        {"image": [imgs.encode(small), imgs.encode(small), imgs.encode(big)], "label": [0] * 3}
    )
    with pytest.raises(DataError, match="row 2: image is 5x5 but earlier images are 4x4"):
        load_parquet_images(path)


def test_unexpected_image_size_is_rejected(write_parquet, imgs):
    path = write_parquet({"image": [imgs.encode(imgs.random(1, 4, 4)[0])], "label": [0]})
    with pytest.raises(DataError, match="4x4 but 32x32 was expected"):
        load_parquet_images(path, expected_hw=(32, 32))


def test_label_out_of_range_is_rejected(write_parquet, imgs):
    images = [imgs.encode(a) for a in imgs.random(3)]
    path = write_parquet({"image": images, "label": [0, 10, 3]})
    with pytest.raises(DataError, match=r"label 10 at row 1 is outside \[0, 10\)"):
        load_parquet_images(path, num_classes=10)


def test_negative_label_is_rejected_even_without_num_classes(write_parquet, imgs):
    images = [imgs.encode(a) for a in imgs.random(2)]
    path = write_parquet({"image": images, "label": [0, -1]})
    with pytest.raises(DataError, match="negative label -1 at row 1"):
        load_parquet_images(path)


def test_non_integer_labels_are_rejected(write_parquet, imgs):
    path = write_parquet({"image": [imgs.encode(imgs.random(1)[0])], "label": [0.5]})
    with pytest.raises(DataError, match="must be integers"):
        load_parquet_images(path)


def test_non_binary_image_column_is_rejected(write_parquet):
    path = write_parquet({"image": ["not bytes"], "label": [0]})
    with pytest.raises(DataError, match="encoded image bytes"):
        load_parquet_images(path)


def test_empty_file_is_rejected(write_parquet):
    path = write_parquet({"image": pa.array([], pa.binary()), "label": pa.array([], pa.int64())})
    with pytest.raises(DataError, match="no rows"):
        load_parquet_images(path)
