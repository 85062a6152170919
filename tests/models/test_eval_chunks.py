"""Evaluation runs a test batch through the model in chunks of EVAL_CHUNK_ROWS rows (to keep
the activations out of glibc's mmap path); the logits, and so the batch's sums, must be the
same, bit for bit, as one pass over the whole batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fslsage_ray.models import build_split_model
from fslsage_ray.tasks.classification import (
    EVAL_CHUNK_ROWS,
    IMAGES,
    LABELS,
    ImageClassification,
    ImageSpec,
)
from fslsage_ray.tasks.image_transforms import make_batch

ROWS = 2 * EVAL_CHUNK_ROWS + 45  # three chunks, the last one short


@pytest.mark.parametrize("model", ["cnn", "resnet18"])
def test_chunked_evaluation_equals_one_pass(model):
    torch.manual_seed(0)
    split = build_split_model(model, 10, 3, 32)
    for part in (split.client, split.server):
        part.train()
    split.server(split.client(torch.randn(32, 3, 32, 32)))  # BatchNorm statistics that matter
    task = ImageClassification(
        spec=ImageSpec(255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False),
        num_classes=10,
        in_channels=3,
        image_size=32,
    )
    rng = np.random.default_rng(0)
    arrays = {
        IMAGES: rng.integers(0, 256, (ROWS, 32, 32, 3), dtype=np.uint8),
        LABELS: rng.integers(0, 10, ROWS),
    }
    split.client.eval()
    split.server.eval()
    sums = task.eval_batch_sums(split.client, split.server, arrays, 0, ROWS, torch.device("cpu"))
    with torch.no_grad():
        x = make_batch(arrays[IMAGES], task.spec, False, None)
        logits = split.server(split.client(x))
        y = torch.from_numpy(arrays[LABELS].astype(np.int64))
        whole = float(F.cross_entropy(logits, y, reduction="sum"))
        correct = int((logits.argmax(1) == y).sum())
    assert sums == {"loss_sum": whole, "correct": correct}
