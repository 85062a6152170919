"""Bytes that depend on the batch, measured on a few samples and scaled to the configured batch.

Activations cannot be read off parameter counts: what autograd keeps for backward depends on
every layer (ReLU keeps its output, a convolution its input, attention its scores, autocast
its casts). A shape pass on the meta device gives the shapes but not which tensors share
storage (a view, an in-place ReLU), so it over-counts. Here the algorithm's own client step,
server step and alignment run for real on 2 and then 4 samples, on the CPU, and every tensor
autograd saves is counted once per storage while it is alive (a saved-tensor hook whose
handle, freed with the graph, gives the bytes back); parameters and buffers are left out
(they are counted as model state). Saved bytes are affine in the batch (a per-sample part
and a fixed part such as BatchNorm's per-channel statistics or bf16 weight casts), so two
points give the line, read off at the configured batch.

Evaluation runs without a graph, so nothing is saved; its peak is what is allocated at once.
PyTorch's CPU allocator keeps no statistics, but its profiler records every allocation and
free; the evaluation chunk is profiled at two row counts and scaled the same way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn


def storage_key(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def module_storages(modules: Iterable[nn.Module]) -> set[int]:
    """Storages of parameters and buffers: model state, not activations."""
    keys = set()
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            keys.add(storage_key(tensor))
    return keys


class SavedTensorMeter:
    """Bytes autograd holds for backward, each storage counted once while any graph keeps
    it: `current` now, `peak` since the meter was entered. Storages in `exclude` (model
    state) are not counted."""

    def __init__(self, exclude: set[int] | None = None) -> None:
        self.exclude = exclude or set()
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, tensor: torch.Tensor) -> _Saved:
        return _Saved(tensor, self)

    @staticmethod
    def _unpack(saved: _Saved) -> torch.Tensor:
        return saved.tensor

    def hold(self, tensor: torch.Tensor) -> int | None:
        if tensor.device.type == "meta":
            return None
        key = storage_key(tensor)
        if key in self.exclude:
            return None
        if key not in self.refs:
            self.refs[key] = 0
            self.sizes[key] = tensor.untyped_storage().nbytes()
            self.current += self.sizes[key]
            self.peak = max(self.peak, self.current)
        self.refs[key] += 1
        return key

    def release(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.current -= self.sizes.pop(key)

    def __enter__(self) -> SavedTensorMeter:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


class _Saved:
    """What autograd keeps instead of the tensor; gives its bytes back when the graph frees it."""

    __slots__ = ("tensor", "meter", "key")

    def __init__(self, tensor: torch.Tensor, meter: SavedTensorMeter) -> None:
        self.tensor, self.meter = tensor, meter
        self.key = meter.hold(tensor)

    def __del__(self) -> None:
        if self.key is not None:
            self.meter.release(self.key)


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
