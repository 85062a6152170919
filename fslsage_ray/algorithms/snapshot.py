"""Plain-data snapshots of models and optimizers, for checkpoints and failure recovery.

A snapshot holds only tensors, numbers, strings and containers, so it loads with
torch.load(weights_only=True): nothing in a checkpoint can execute code.

A model's snapshot leaves out its frozen parameters (LoRA's base): they are the run's
template's, shared by every copy in a process (models/frozen.py), and the same in every
process. Snapshots written before that carry them; they still restore, the frozen entries
checked against the base rather than written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fslsage_ray.models.frozen import load_own_state, own_state


def to_cpu(obj: Any) -> Any:
    """The same nested structure with every tensor copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, Mapping):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def snapshot_pair(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return {"model": to_cpu(own_state(model)), "optimizer": to_cpu(optimizer.state_dict())}


def restore_pair(
    snap: Mapping[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    load_own_state(model, snap["model"])
    optimizer.load_state_dict(snap["optimizer"])  # moves state to the parameters' device
