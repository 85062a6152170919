"""Batch-level tensor transforms: how uint8 images become an image task's model input.

They live with the tasks, not the data sources: the data layer hands over numpy arrays
(and imports no torch), a task turns rows into tensors.

Augmentation randomness comes only from the caller's ``torch.Generator``, so a client that
owns its generator gets the same crops and flips whichever process or actor it runs in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F


class NormalizationSpec(Protocol):
    """What :func:`make_batch` needs from a data set (``ImageSpec`` satisfies it)."""

    max_value: float
    mean: tuple[float, ...]
    std: tuple[float, ...]


def to_float_batch(
    images: np.ndarray | torch.Tensor,
    max_value: float,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [0, 1]; moves the compact uint8 data before widening."""
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # read-only (e.g. Ray object store): torch would warn; tiny copy
    x = torch.as_tensor(images)
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (N, H, W, C), got {tuple(x.shape)}")
    if device is not None:
        x = x.to(device)
    x = x.permute(0, 3, 1, 2).to(torch.float32).contiguous()
    return x.mul_(1.0 / max_value)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel ``(x - mean) / std`` on an NCHW batch (returns a new tensor)."""
    shape = (1, -1, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - mean_t) / std_t


def to_tensor_batch(
    images_uint8: np.ndarray | torch.Tensor,
    max_value: float,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """uint8 NHWC -> normalised float32 NCHW: ``(x / max_value - mean) / std``."""
    return normalize(to_float_batch(images_uint8, max_value), mean, std)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Zero-pad, randomly crop back to HxW and flip horizontally with p=0.5, per sample.

    Apply it to the [0, 1] batch *before* :func:`normalize`, so padding is black as in the
    usual CIFAR recipe. One gather does all samples at once (no Python loop).
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    batch, channels, height, width = x.shape
    gen_device = generator.device
    offsets = torch.randint(
        0, 2 * padding + 1, (2, batch), generator=generator, device=gen_device
    ).to(x.device)
    flip = (torch.rand(batch, generator=generator, device=gen_device) < 0.5).to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x

    rows = offsets[0, :, None] + torch.arange(height, device=x.device)  # (B, H)
    col_base = torch.arange(width, device=x.device)
    col_base = torch.where(flip[:, None], col_base.flip(0), col_base)  # (B, W)
    cols = offsets[1, :, None] + col_base
    # Flatten each padded image's spatial grid and gather the crop in one go.
    flat_index = (rows[:, :, None] * (width + 2 * padding) + cols[:, None, :]).view(batch, 1, -1)
    flat = padded.reshape(batch, channels, -1)
    out = torch.gather(flat, 2, flat_index.expand(batch, channels, height * width))
    return out.view(batch, channels, height, width)


def make_batch(
    images_uint8: np.ndarray | torch.Tensor,
    spec: NormalizationSpec,
    augment: bool,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Model-ready batch: scale to [0, 1], optionally crop+flip, then normalise."""
    x = to_float_batch(images_uint8, spec.max_value, device)
    if augment:
        if generator is None:
            raise ValueError("augment=True needs a torch.Generator for reproducible crops")
        x = random_crop_flip(x, generator)
    return normalize(x, spec.mean, spec.std)
