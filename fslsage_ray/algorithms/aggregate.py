"""Weighted averaging of model state (spec: FSL-SAGE step 4, FedAvg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def sample_weights(sizes: Sequence[int]) -> list[float]:
    """n_i / n for each client."""
    total = sum(sizes)
    if total <= 0:
        raise ValueError("cannot weight clients that hold no samples")
    return [n / total for n in sizes]


def weighted_average(
    states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]
) -> dict[str, torch.Tensor]:
    """sum_i w_i * state_i over every entry, BatchNorm running statistics included.

    Summed in float64 in the given order, so the result is the same however the states were
    produced. Integer entries (num_batches_tracked) are rounded back to their dtype.
    """
    if not states or len(states) != len(weights):
        raise ValueError("need one weight per state and at least one state")
    out: dict[str, torch.Tensor] = {}
    for key, first in states[0].items():
        acc = torch.zeros(first.shape, dtype=torch.float64)
        for state, weight in zip(states, weights, strict=True):
            acc += state[key].detach().to("cpu", torch.float64) * weight
        if first.dtype.is_floating_point:
            out[key] = acc.to(first.dtype)
        else:
            out[key] = acc.round().to(first.dtype)
    return out
