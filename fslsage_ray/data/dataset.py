"""Containers for decoded image data, validated once so later stages can trust them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DataError(ValueError):
    """Bad or missing data, reported before any training starts."""


def check_label_range(labels: np.ndarray, num_classes: int, where: str) -> None:
    """Raise DataError naming the first label outside [0, num_classes)."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        row = int(bad[0])
        raise DataError(
            f"{where}: label {int(labels[row])} at row {row} is outside [0, {num_classes}) "
            f"({bad.size} such rows)"
        )


@dataclass(frozen=True)
class ImageData:
    """One split: uint8 images NHWC and int64 labels, kept compact (decoded once).

    Images stay uint8 (4x smaller than float32) so every client can hold its share cheaply;
    conversion to float happens per batch in :mod:`fslsage_ray.tasks.image_transforms`.
    """

    images: np.ndarray  # uint8, shape (N, H, W, C)
    labels: np.ndarray  # int64, shape (N,)

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, np.ndarray) or not isinstance(labels, np.ndarray):
            raise DataError("images and labels must be numpy arrays")
        if images.dtype != np.uint8:
            raise DataError(f"images must be uint8, got {images.dtype}")
        if images.ndim != 4:
            raise DataError(f"images must have shape (N, H, W, C), got {images.shape}")
        if labels.dtype != np.int64:
            raise DataError(f"labels must be int64, got {labels.dtype}")
        if labels.ndim != 1:
            raise DataError(f"labels must have shape (N,), got {labels.shape}")
        if len(images) != len(labels):
            raise DataError(f"{len(images)} images but {len(labels)} labels")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        _, h, w, c = self.images.shape
        return (int(h), int(w), int(c))


@dataclass(frozen=True)
class DataBundle:
    """Train and test splits plus what models and transforms need to know about them."""

    train: ImageData
    test: ImageData
    num_classes: int
    mean: tuple[float, ...]  # per-channel, applied after scaling to [0, 1]
    std: tuple[float, ...]
    augment: bool  # random crop (pad 4) + horizontal flip suits this data
    max_value: float  # value that maps to 1.0 when scaling (255 for 8-bit images)
    name: str

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise DataError(f"num_classes must be >= 1, got {self.num_classes}")
        channels = self.train.image_shape[2]
        if self.test.image_shape != self.train.image_shape:
            raise DataError(
                f"train images are {self.train.image_shape} but test images are "
                f"{self.test.image_shape}"
            )
        if len(self.mean) != channels or len(self.std) != channels:
            raise DataError(
                f"mean/std need {channels} values (one per channel), got "
                f"{len(self.mean)}/{len(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise DataError(f"std values must be positive, got {self.std}")
        if self.max_value <= 0:
            raise DataError(f"max_value must be positive, got {self.max_value}")
        for split_name, split in (("train", self.train), ("test", self.test)):
            check_label_range(split.labels, self.num_classes, f"{self.name} {split_name}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) shared by both splits."""
        return self.train.image_shape
