"""The probe set through the client part: what would cross the cut for each probe example."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fslsage_ray.tasks.base import Arrays, Task, forward

ATTENTION_MASK = "attention_mask"  # the text task's context key (tasks/language_model.py)


@dataclass
class CutView:
    """Probe inputs (as the model reads them) and their cut activations, rows aligned;
    `mask` (text only) marks the token positions that count."""

    inputs: torch.Tensor
    activations: torch.Tensor
    mask: torch.Tensor | None


@torch.no_grad()
def through_cut(
    task: Task, client: nn.Module, arrays: Arrays, batch_size: int, device: torch.device
) -> CutView:
    """The whole probe set in batches of `batch_size`, in eval mode (no augmentation, no
    dropout); the client part's train/eval mode is left as it was."""
    rows = task.num_samples(arrays)
    inputs, outputs, masks = [], [], []
    was_training = client.training
    client.eval()
    try:
        for start in range(0, rows, batch_size):
            idx = np.arange(start, min(rows, start + batch_size))
            batch = task.batch(arrays, idx, None, False, device)
            outputs.append(forward(client, batch.inputs, batch.context).float().cpu())
            inputs.append(batch.inputs.cpu())
            if ATTENTION_MASK in batch.context:
                masks.append(batch.context[ATTENTION_MASK].cpu())
    finally:
        client.train(was_training)
    mask = torch.cat(masks) if masks else None
    return CutView(torch.cat(inputs), torch.cat(outputs), mask)
