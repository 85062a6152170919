"""CIFAR-10/100 from local parquet files when present, else through torchvision."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from fslsage_ray.data.dataset import DataBundle, DataError, ImageData
from fslsage_ray.data.parquet_images import load_parquet_images

NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
# ImageNet statistics, as the FSL-SAGE spec prescribes (not CIFAR's own).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CACHE = Path("~/.cache/fslsage_ray/data")


def parquet_paths(name: str, data_dir: str | Path) -> tuple[Path, Path]:
    """Where the parquet copies of ``name`` would live inside ``data_dir``."""
    root = Path(data_dir).expanduser()
    return root / f"{name}-train.parquet", root / f"{name}-test.parquet"


# Given a split's labels and its name ("train", "test"), the rows a run keeps (None: all).
Select = Callable[[np.ndarray, str], np.ndarray | None]


def _from_parquet(
    train_path: Path, test_path: Path, num_classes: int, select: Select | None
) -> tuple[ImageData, ...]:
    return tuple(
        load_parquet_images(
            path,
            num_classes=num_classes,
            expected_hw=(32, 32),
            select=None if select is None else partial(select, split=split),
        )
        for path, split in ((train_path, "train"), (test_path, "test"))
    )


def _from_torchvision(name: str, root: Path, download: bool) -> tuple[ImageData, ...]:
    """Use torchvision's pickled copy; ``.data`` is already uint8 NHWC."""
    from torchvision import datasets  # local import: slow, and only needed on this path

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    splits = []
    for train in (True, False):
        ds = cls(root=str(root), train=train, download=download)
        images = np.ascontiguousarray(ds.data, dtype=np.uint8)
        splits.append(ImageData(images, np.asarray(ds.targets, dtype=np.int64)))
    return tuple(splits)


def load_cifar(
    name: str, data_dir: str | None, download: bool = True, select: Select | None = None
) -> DataBundle:
    """Load CIFAR-10 or CIFAR-100 with the spec's ImageNet normalisation and augmentation on.

    Parquet files in ``data_dir`` win because they work offline (and only the rows `select`
    keeps are decoded); otherwise torchvision downloads (or finds) its own copy under
    ``data_dir`` or the user cache, already decoded.
    """
    if name not in NUM_CLASSES:
        raise DataError(f"unknown CIFAR data set {name!r}; choose one of {sorted(NUM_CLASSES)}")
    num_classes = NUM_CLASSES[name]
    train_path = test_path = None
    if data_dir is not None:
        train_path, test_path = parquet_paths(name, data_dir)
    if train_path is not None and train_path.is_file() and test_path.is_file():
        train, test = _from_parquet(train_path, test_path, num_classes, select)
    else:
        root = Path(data_dir).expanduser() if data_dir is not None else DEFAULT_CACHE.expanduser()
        try:
            train, test = _from_torchvision(name, root, download)
        except (RuntimeError, OSError) as err:  # not found / corrupted / offline download
            where = (
                f"{train_path} and {test_path}"
                if train_path is not None
                else f"<data_dir>/{name}-train.parquet and <data_dir>/{name}-test.parquet"
            )
            attempt = "tried, needs internet" if download else "pass download=True; needs internet"
            raise DataError(
                f"cannot load {name}: either put {where} in place (pass data_dir), or let "
                f"torchvision download it into {root} ({attempt}). torchvision said: {err}"
            ) from err
    return DataBundle(
        train=train,
        test=test,
        num_classes=num_classes,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        augment=True,
        max_value=255.0,
        name=name,
    )
