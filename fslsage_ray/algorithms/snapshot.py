"""Plain-data snapshots of models and optimizers, for checkpoints and failure recovery.

A snapshot holds only tensors, numbers, strings and containers, so it loads with
torch.load(weights_only=True): nothing in a checkpoint can execute code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


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
    return {"model": to_cpu(model.state_dict()), "optimizer": to_cpu(optimizer.state_dict())}


def restore_pair(
    snap: Mapping[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    model.load_state_dict(snap["model"])
    optimizer.load_state_dict(snap["optimizer"])  # moves state to the parameters' device
