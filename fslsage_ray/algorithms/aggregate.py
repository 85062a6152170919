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
    total = RunningAverage()
    for state, weight in zip(states, weights, strict=True):
        total.add(state, weight)
    return total.result()


class RunningAverage:
    """weighted_average with the states given one at a time, so they need not all exist at
    once: each entry's float64 sum takes the same additions in the same order, hence the
    same bits as weighted_average of the whole list."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._dtypes: dict[str, torch.dtype] = {}

    def add(self, state: Mapping[str, torch.Tensor], weight: float) -> None:
        if not self._sums:
            for key, first in state.items():
                self._sums[key] = torch.zeros(first.shape, dtype=torch.float64)
                self._dtypes[key] = first.dtype
        for key, acc in self._sums.items():
            acc += state[key].detach().to("cpu", torch.float64) * weight

    def result(self) -> dict[str, torch.Tensor]:
        if not self._sums:
            raise ValueError("need at least one state")
        out: dict[str, torch.Tensor] = {}
        for key, acc in self._sums.items():
            dtype = self._dtypes[key]
            out[key] = acc.to(dtype) if dtype.is_floating_point else acc.round().to(dtype)
        return out
