"""Tensors cross Ray as raw bytes (runtime/tensor_wire.py): every kind comes back equal."""

from __future__ import annotations

import pytest
import ray
import torch

from fslsage_ray.config.schema import RuntimeConfig
from fslsage_ray.runtime import tensor_wire
from fslsage_ray.runtime.cluster import connect


def _cases() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=gen)
    return {
        "float32": base,
        "bfloat16": base.to(torch.bfloat16),
        "float16": base.half(),
        "int64": torch.arange(24).reshape(2, 3, 4),
        "bool": base > 0,
        "complex": torch.complex(base, -base),
        "conjugated": torch.complex(base, base).conj(),
        "scalar": torch.tensor(3.5),
        "empty": torch.empty(0, 5),
        "transposed": base.t(),
        "strided view": base[::2, 1::3],
        "slice with an offset": base[1:3],
        "channels last": torch.randn(3, 4, 5, 6, generator=gen).to(
            memory_format=torch.channels_last
        ),
        "size-1 dims": torch.randn(1, 4, 1, 6, generator=gen).permute(3, 2, 1, 0),
        "grad": base.clone().requires_grad_(True),
        "sparse": base.relu().to_sparse(),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_round_trip_is_exact(name):
    original = _cases()[name]
    back = tensor_wire.from_wire(tensor_wire.to_wire(original))
    assert back.dtype == original.dtype and back.shape == original.shape
    assert back.requires_grad == original.requires_grad
    if original.layout == torch.strided:  # the layout picks the kernel, so the rounding
        assert back.stride() == original.stride()
    if original.layout == torch.strided:
        assert torch.equal(back.detach().resolve_conj(), original.detach().resolve_conj())
        back.detach().add_(1) if back.dtype != torch.bool else None  # writable, not shared
    else:
        assert torch.equal(back.to_dense(), original.to_dense())


def test_through_the_object_store(ray_local):
    """A state dict crosses as bytes and arrives equal and writable; dense tensors need
    no torch.load on the way back (views with gaps still go through torch.save)."""
    connect(RuntimeConfig())  # Ray is up already: connecting registers the wire format
    state = {k: v for k, v in _cases().items() if k != "sparse"}
    back = ray.get(ray.put(state))
    for key, tensor in state.items():
        assert torch.equal(back[key].detach().resolve_conj(), tensor.detach().resolve_conj())
    back["float32"].add_(1.0)  # a fresh buffer, not the store's read-only one

    dense = {k: v for k, v in state.items() if k not in ("strided view", "conjugated")}
    calls = []
    original_load = torch.load
    torch.load = lambda *a, **k: calls.append(1) or original_load(*a, **k)
    try:
        ray.get(ray.put(dense))
    finally:
        torch.load = original_load
    assert calls == []
