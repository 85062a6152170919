"""A client's window on the shared training arrays: its indices, its batches, its RNG."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from fslsage_ray.tasks.base import Arrays, Batch, Task


@dataclass
class ClientView:
    """Slices the shared arrays by index; never copies the data set."""

    arrays: Arrays  # the whole training split (e.g. images and labels), shared read-only
    indices: np.ndarray  # this client's part
    task: Task  # turns rows into batches

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

    def batch(self, idx: np.ndarray, generator: torch.Generator, device: torch.device) -> Batch:
        return self.task.batch(self.arrays, idx, generator, True, device)


def batch_sizes(num_samples: int, batch_size: int) -> list[int]:
    full, rest = divmod(num_samples, batch_size)
    return [batch_size] * full + ([rest] if rest else [])
