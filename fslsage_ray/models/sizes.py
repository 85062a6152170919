"""Size arithmetic: parameter counts, state bytes (for the communication ledger), conv shapes."""

from __future__ import annotations

from torch import nn


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements (trainable or not); buffers are not parameters."""
    return sum(p.numel() for p in module.parameters())


def state_nbytes(module: nn.Module) -> int:
    """Bytes of the full state_dict: what a model transfer costs on the wire.

    Counts parameters AND buffers (BatchNorm running mean/var and the int64
    ``num_batches_tracked``), each as numel x element size, because a transferred model
    must carry them to be usable on the other side.
    """
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial output size of a convolution or pooling window (no dilation, floor mode)."""
    return (size + 2 * padding - kernel) // stride + 1
