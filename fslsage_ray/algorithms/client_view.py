"""A client's window on the shared training arrays: its indices, its batches, its RNG."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from fslsage_ray.data.transforms import make_batch


@dataclass(frozen=True)
class ImageSpec:
    """How uint8 images become model input (the same for every client and the server)."""

    max_value: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool


@dataclass
class ClientView:
    """Slices the shared arrays by index; never copies the data set."""

    images: np.ndarray  # all training images (uint8 NHWC), shared read-only
    labels: np.ndarray  # all training labels (int64)
    indices: np.ndarray  # this client's part
    spec: ImageSpec

    @property
    def num_samples(self) -> int:
        return int(len(self.indices))

    def num_batches(self, batch_size: int) -> int:
        """K = ceil(n_i / B): the last, smaller batch is kept (spec)."""
        return math.ceil(self.num_samples / batch_size)

    def shuffled_batches(self, batch_size: int, generator: torch.Generator) -> list[np.ndarray]:
        order = torch.randperm(self.num_samples, generator=generator).numpy()
        shuffled = self.indices[order]
        return [shuffled[i : i + batch_size] for i in range(0, self.num_samples, batch_size)]

    def batch(
        self, idx: np.ndarray, generator: torch.Generator, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = make_batch(self.images[idx], self.spec, self.spec.augment, generator)
        y = torch.from_numpy(np.ascontiguousarray(self.labels[idx], dtype=np.int64))
        return x.to(device), y.to(device)


def upload_iterations(num_batches: int, upload_every: int) -> range:
    """Iterations whose smashed batch goes to the server: it % q == 0."""
    return range(0, num_batches, upload_every)


def batch_sizes(num_samples: int, batch_size: int) -> list[int]:
    full, rest = divmod(num_samples, batch_size)
    return [batch_size] * full + ([rest] if rest else [])
