"""The decoded-image cache: same bytes as decoding afresh, memory-mapped on reuse, a broken
entry rebuilt, and only the rows a run keeps decoded."""

from __future__ import annotations

import logging
import mmap
from pathlib import Path

import numpy as np
import pytest

from fslsage_ray.config import load_config
from fslsage_ray.data.cache import DECODED_DIR
from fslsage_ray.data.parquet_images import load_parquet_images
from fslsage_ray.data.subset import subset_rows
from fslsage_ray.experiment import load_data


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FSLSAGE_RAY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / DECODED_DIR


def _entries(cache: Path) -> list[Path]:
    if not cache.is_dir():
        return []
    return sorted(p for p in cache.iterdir() if not p.name.startswith("."))


def _mapped(array: np.ndarray) -> bool:
    while array is not None and not isinstance(array, mmap.mmap):
        array = getattr(array, "base", None)
    return isinstance(array, mmap.mmap)


def _jpegs(write_parquet, imgs, n: int = 24, name: str = "split.parquet", size: int = 8):
    images = imgs.random(n, size, size, seed=n)
    return write_parquet(
        {"image": [imgs.encode(a, "JPEG") for a in images], "label": [i % 3 for i in range(n)]},
        name,
    )


def _uncached(path, monkeypatch, **kwargs):
    with monkeypatch.context() as m:
        m.setenv("FSLSAGE_RAY_CACHE", "off")
        return load_parquet_images(path, **kwargs)


def test_cached_images_are_byte_identical_and_memory_mapped(
    write_parquet, imgs, cache, monkeypatch
):
    path = _jpegs(write_parquet, imgs)
    fresh = _uncached(path, monkeypatch)
    assert not cache.exists()
    cold = load_parquet_images(path)
    (entry,) = _entries(cache)
    warm = load_parquet_images(path)
    for data in (cold, warm):
        assert data.images.dtype == fresh.images.dtype and data.images.shape == fresh.images.shape
        assert data.images.tobytes() == fresh.images.tobytes()
        assert np.array_equal(data.labels, fresh.labels)
        assert not data.images.flags.writeable
    assert _mapped(warm.images) and not _mapped(fresh.images)
    assert _entries(cache) == [entry]


def test_a_broken_entry_is_rebuilt(write_parquet, imgs, cache, monkeypatch, caplog):
    path = _jpegs(write_parquet, imgs)
    fresh = _uncached(path, monkeypatch)
    load_parquet_images(path)
    (entry,) = _entries(cache)
    stored = entry / "images.npy"
    size = stored.stat().st_size
    with stored.open("r+b") as handle:  # a short file, as a full disk or a crash leaves
        handle.truncate(size - 100)
    with caplog.at_level(logging.WARNING, logger="fslsage_ray"):
        again = load_parquet_images(path)
    assert "unreadable" in caplog.text
    assert again.images.tobytes() == fresh.images.tobytes()
    assert stored.stat().st_size == size  # rewritten whole
    (entry / "key.json").unlink()  # a folder without its key file is not trusted either
    assert load_parquet_images(path).images.tobytes() == fresh.images.tobytes()
    assert (entry / "key.json").is_file()


def test_subset_decoding_equals_decoding_all_then_subsetting(
    write_parquet, imgs, cache, monkeypatch
):
    path = _jpegs(write_parquet, imgs, n=30)
    full = _uncached(path, monkeypatch)
    rows = subset_rows(full.labels, 10, seed=7)

    part = load_parquet_images(path, select=lambda labels: subset_rows(labels, 10, seed=7))
    assert part.images.tobytes() == full.images[rows].tobytes()
    assert np.array_equal(part.labels, full.labels[rows])
    (entry,) = _entries(cache)
    assert np.load(entry / "images.npy", mmap_mode="r").shape[0] == 10  # only those decoded

    load_parquet_images(path)  # the whole file decoded and stored: it now serves any subset
    other = load_parquet_images(path, select=lambda labels: subset_rows(labels, 6, seed=1))
    assert other.images.tobytes() == full.images[subset_rows(full.labels, 6, seed=1)].tobytes()
    assert len(_entries(cache)) == 2


def test_a_grayscale_subset_of_a_mixed_file_is_rgb_as_in_the_whole(
    write_parquet, imgs, cache, monkeypatch
):
    gray = imgs.random(3, c=1)
    colour = imgs.random(1)[0]
    encoded = [imgs.encode(a) for a in gray] + [imgs.encode(colour)]
    path = write_parquet({"image": encoded, "label": [0, 0, 0, 1]})
    full = _uncached(path, monkeypatch)
    assert full.images.shape[3] == 3
    part = load_parquet_images(path, select=lambda labels: np.array([0, 2]))
    assert part.images.tobytes() == full.images[[0, 2]].tobytes()


def test_cifar_source_decodes_only_the_chosen_rows(tmp_path, write_parquet, imgs, cache):
    for split, n in (("train", 40), ("test", 20)):
        _jpegs(write_parquet, imgs, n, f"cifar10-{split}.parquet", size=32)
    overrides = [
        "data.name=cifar10",
        f"data.data_dir={tmp_path}",
        "data.train_subset=12",
        "data.test_subset=6",
        "run.seed=3",
    ]
    config = load_config(None, overrides)
    data = load_data(config)
    decoded = sorted(np.load(e / "images.npy", mmap_mode="r").shape[0] for e in _entries(cache))
    assert decoded == [6, 12]
    for split, seed in (("train", 3), ("test", 4)):
        whole = load_parquet_images(tmp_path / f"cifar10-{split}.parquet")
        rows = subset_rows(whole.labels, 12 if split == "train" else 6, seed)
        arrays = getattr(data, split)
        assert arrays["images"].tobytes() == whole.images[rows].tobytes()
        assert np.array_equal(arrays["labels"], whole.labels[rows])


def test_cached_arrays_reach_ray_workers_zero_copy(write_parquet, imgs, cache, ray_local):
    """What the Ray backend does with the training split: one ray.put, read in place."""
    path = _jpegs(write_parquet, imgs)
    load_parquet_images(path)
    warm = load_parquet_images(path)  # memory-mapped from the cache
    ref = ray_local.put({"images": warm.images, "labels": warm.labels})

    @ray_local.remote
    def inspect(arrays):
        images = arrays["images"]
        return images.tobytes(), images.flags.writeable, images.flags.owndata

    data, writeable, owndata = ray_local.get(inspect.remote(ref))
    assert data == warm.images.tobytes()
    assert not writeable and not owndata  # a view of the object store, not a copy
