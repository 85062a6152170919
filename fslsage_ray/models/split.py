"""The split-model container shared by every algorithm."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from fslsage_ray.tasks.base import Task


@dataclass
class SplitModel:
    """A model cut at the cut layer: client part h, server part s, and an auxiliary-model factory.

    Every part outputs logits; the caller applies cross-entropy. ``make_aux`` draws its random
    initialisation from the global torch RNG, so each call gives a fresh, independent module and
    ``torch.manual_seed`` before the call makes it reproducible.
    """

    client: nn.Module  # input images (N, C, H, W) -> smashed activations z
    server: nn.Module  # z -> class logits (N, num_classes)
    make_aux: Callable[[], nn.Module]  # builds a FRESH auxiliary model z -> logits
    cut_shape: tuple[int, ...]  # per-sample shape of z, e.g. (128, 4, 4)
    task: Task | None = None  # what the parts are trained and judged on (set by the builder)
