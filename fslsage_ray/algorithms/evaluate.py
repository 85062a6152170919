"""Test-set evaluation of the aggregated client model followed by the server model."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fslsage_ray.algorithms.client_view import ImageSpec
from fslsage_ray.data.transforms import make_batch


@torch.no_grad()
def evaluate_split(
    client_model: nn.Module,
    server_model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    spec: ImageSpec,
    batch_size: int,
    device: torch.device,
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) in eval mode; the AMs are never used at test time."""
    was_training = client_model.training, server_model.training
    client_model.eval()
    server_model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(labels), batch_size):
        x = make_batch(images[start : start + batch_size], spec, False, None).to(device)
        y = torch.from_numpy(np.asarray(labels[start : start + batch_size], np.int64)).to(device)
        logits = server_model(client_model(x))
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    client_model.train(was_training[0])
    server_model.train(was_training[1])
    n = len(labels)
    return correct / n, loss_sum / n
