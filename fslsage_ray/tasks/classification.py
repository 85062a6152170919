"""Image classification: uint8 images and class ids in, batch-mean cross-entropy and accuracy out.

These are exactly the operations the image experiments have always used, so every number
(golden metrics, determinism, ledger) is unchanged by the task layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fslsage_ray.tasks.base import Arrays, Batch, PayloadSizes, Sums, Task, forward
from fslsage_ray.tasks.image_transforms import make_batch

IMAGES, LABELS = "images", "labels"  # the arrays of an image split
# Rows per forward pass inside an evaluation batch. glibc serves every allocation above
# 32 MiB with a fresh mmap that the kernel zero-fills page by page and unmaps on free; a
# 1,000-row batch's activations (131 MB for a 32-channel 32x32 layer) took that path on
# every layer, so evaluation spent most of its time in the kernel (the split CNN: 0.67 s
# against 0.23 s in chunks of 128, one thread). The logits are the same, bit for bit
# (tests/models/test_eval_chunks.py); the batch's sums, and so the metrics, do not change.
EVAL_CHUNK_ROWS = 128


@dataclass(frozen=True)
class ImageSpec:
    """How uint8 images become model input (the same for every client and the server)."""

    max_value: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool


@dataclass(frozen=True)
class ImageClassification(Task):
    """Class ids as targets; the headline is test accuracy."""

    spec: ImageSpec
    num_classes: int
    in_channels: int
    image_size: int

    headline: ClassVar[str] = "test_acc"
    goal: ClassVar[str] = "max"
    metric_names: ClassVar[tuple[str, ...]] = ("test_acc", "test_loss")

    def batch(self, arrays: Arrays, idx, generator, train: bool, device) -> Batch:
        x = make_batch(arrays[IMAGES][idx], self.spec, train and self.spec.augment, generator)
        y = torch.from_numpy(np.ascontiguousarray(arrays[LABELS][idx], dtype=np.int64))
        return Batch(x.to(device), y.to(device))

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, targets)

    def loss_count(self, targets: torch.Tensor) -> int:
        return len(targets)

    batched_evaluation: ClassVar[bool] = True

    @torch.no_grad()
    def eval_batch_sums(
        self, client: nn.Module, server: nn.Module, arrays: Arrays, start: int, stop: int, device
    ) -> Sums:
        """Summed cross-entropy and correct predictions; the AMs are never used at test time."""
        x = make_batch(arrays[IMAGES][start:stop], self.spec, False, None).to(device)
        y = torch.from_numpy(np.asarray(arrays[LABELS][start:stop], np.int64)).to(device)
        logits = torch.cat(
            [forward(server, forward(client, part, {}), {}) for part in x.split(EVAL_CHUNK_ROWS)]
        )
        return {
            "loss_sum": float(F.cross_entropy(logits, y, reduction="sum")),
            "correct": int((logits.argmax(1) == y).sum()),
        }

    def eval_metrics(self, sums: Sums, rows: int) -> dict[str, float]:
        return {"test_acc": sums["correct"] / rows, "test_loss": sums["loss_sum"] / rows}

    def payload_sizes(self, cut_shape: tuple[int, ...]) -> PayloadSizes:
        return PayloadSizes(smashed=int(np.prod(cut_shape)) * 4, context=0, targets=8)


# The loss alone, for code (and tests) that works on logits and class ids without data.
CROSS_ENTROPY = ImageClassification(ImageSpec(1.0, (0.0,), (1.0,), False), 1, 1, 1)
