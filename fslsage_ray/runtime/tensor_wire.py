"""torch tensors through Ray's object store as raw bytes (a numpy array), not torch.save.

Ray pickles a tensor with torch's own reducer, which writes each storage in torch.save's
legacy format and reads it back with torch.load: about 0.1 ms per tensor each way, and an
AM's state with its Adam moments is some 60 tensors, sent out and back for every client in
every alignment round (benchmarks/RESULTS.md, issue 14). As bytes, a tensor crosses with
one copy each side. The bytes are the same, so no result changes.

Registered in every process that sends tensors (the driver and each actor); a receiver
needs nothing, since the reader below travels by reference with the data.
"""

from __future__ import annotations

import io

import numpy as np
import torch

Wire = tuple  # what a tensor becomes on the wire; only from_wire reads it


def to_wire(tensor: torch.Tensor) -> Wire:
    """A dense tensor: (its memory as uint8, dtype, shape, strides, requires_grad, device).
    The strides travel too: a channels-last tensor must stay channels-last, since the layout
    picks the convolution kernel and so the rounding. Anything else (a view with gaps,
    sparse, quantized, nested, conjugated) goes through torch.save, as Ray's default did."""
    t = tensor.detach()
    device = str(t.device)
    if not _plain_dense(t):
        buffer = io.BytesIO()
        torch.save(t.cpu(), buffer)
        return ("saved", buffer.getvalue(), tensor.requires_grad, device)
    t = t.cpu()
    memory = t.as_strided((t.numel(),), (1,), t.storage_offset())  # in storage order
    raw = memory.view(torch.uint8).numpy() if t.numel() else np.empty(0, np.uint8)
    dtype = str(t.dtype).removeprefix("torch.")
    return ("raw", raw, dtype, tuple(t.shape), t.stride(), tensor.requires_grad, device)


def from_wire(wire: Wire) -> torch.Tensor:
    """A fresh, writable tensor (the object store's buffer is read-only and shared)."""
    kind, *rest = wire
    if kind == "saved":
        data, requires_grad, device = rest
        # our own bytes, as trusted as the pickle around them
        t = torch.load(io.BytesIO(data), weights_only=False)
    else:
        raw, name, shape, stride, requires_grad, device = rest
        dtype = getattr(torch, name)
        if raw.size == 0:
            t = torch.empty_strided(shape, stride, dtype=dtype)
        else:
            memory = torch.from_numpy(np.array(raw, copy=True)).view(dtype)
            t = memory.as_strided(shape, stride)
    if device != "cpu":
        t = t.to(device)
    return t.requires_grad_(requires_grad) if requires_grad else t


def _plain_dense(t: torch.Tensor) -> bool:
    """Strided, not conjugated or negated, and its elements fill one block of memory with
    no gaps or overlaps, in some order of its dimensions (contiguous, channels-last, a
    transpose)."""
    if t.layout != torch.strided or t.is_quantized or t.is_nested or t.is_conj() or t.is_neg():
        return False
    expected = 1
    for size, stride in sorted(
        (s for s in zip(t.shape, t.stride(), strict=True) if s[0] != 1), key=lambda s: s[1]
    ):
        if stride != expected:
            return False
        expected *= size
    return True


def register() -> None:
    """Use the wire format for torch.Tensor in this process's Ray serializer (idempotent).
    Subclasses (nn.Parameter) keep Ray's default, which pickles them with torch's reducer."""
    import ray.util

    ray.util.register_serializer(torch.Tensor, serializer=to_wire, deserializer=from_wire)
