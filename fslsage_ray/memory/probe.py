"""Bytes that depend on the batch, measured on a few samples and scaled to the configured batch.

Activations cannot be read off parameter counts: what autograd keeps for backward depends on
every layer (ReLU keeps its output, a convolution its input, attention its scores, autocast
its casts), and a step also allocates gradients, the gradients of activations during
backward and the optimizer's temporaries. A shape pass on the meta device gives shapes but
not which tensors share storage or live at the same time, so it over- or under-counts. So
the algorithm's own client step, server step, alignment and evaluation run for real on the
CPU on a few samples, and PyTorch's allocations are followed: its CPU allocator keeps no
statistics, but the profiler records every allocation and free, and the most bytes held at
once above the level at entry is the step's need beyond model state. That is affine in the
batch (a per-sample part, and a fixed part such as gradients, Adam's temporaries, BatchNorm
statistics), so two sizes give the line, read off at the configured batch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@contextlib.contextmanager
def allocation_peak() -> Iterator[list[int]]:
    """The most bytes PyTorch's CPU allocator held at once above its level at entry, from the
    profiler's allocation records; the one-element list is filled on exit."""
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # the profiler's own log lines, not ours
    from torch.profiler import ProfilerActivity, profile

    out = [0]
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        yield out
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
        key=lambda e: e.start_ns(),
    )
    level = peak = 0
    for event in events:
        if event.device_type() == torch.autograd.DeviceType.CPU:
            level += event.nbytes()
            peak = max(peak, level)
    out[0] = peak


@dataclass(frozen=True)
class Affine:
    """bytes = fixed + per_sample x n, fitted through two measured points."""

    fixed: float
    per_sample: float

    @classmethod
    def through(cls, n1: int, b1: int, n2: int, b2: int) -> Affine:
        slope = (b2 - b1) / (n2 - n1)
        return cls(max(0.0, b1 - slope * n1), max(0.0, slope))

    def at(self, n: int) -> int:
        return int(round(self.fixed + self.per_sample * n))
