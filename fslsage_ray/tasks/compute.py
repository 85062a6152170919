"""How a model part computes: bf16 autocast and channels-last memory (model.precision,
model.channels_last).

Both are set once on each part when it is built (`configure`) and honoured by
`tasks.base.forward`, the one call every forward pass makes, so algorithms, backends and
evaluation never look at them. A part computing in bf16 still hands float32 to whoever
called it: smashed activations, logits and the gradients that cross the cut stay float32,
so a payload carries (and the ledger books) exactly what a float32 run sends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

_ATTRIBUTE = "_fslsage_compute"  # a plain attribute: copied by deepcopy, absent from state_dict


@dataclass(frozen=True)
class Compute:
    precision: str = "fp32"  # fp32 | bf16 (autocast: convolutions and matmuls in bfloat16)
    channels_last: bool = False  # NHWC memory for 4-D inputs and convolution weights

    @property
    def plain(self) -> bool:
        return self.precision == "fp32" and not self.channels_last

    def describe(self) -> str:
        """For run.log: what the parts compute in (the cut stays float32 either way)."""
        words = ["bf16 autocast" if self.precision == "bf16" else "fp32"]
        return ", ".join(words + ["channels-last"] * self.channels_last)


def configure(module: nn.Module, compute: Compute) -> nn.Module:
    """Mark `module` (in place) to compute as `compute` says; returns it."""
    if compute.channels_last:
        module.to(memory_format=torch.channels_last)
    if compute.plain:
        if hasattr(module, _ATTRIBUTE):
            delattr(module, _ATTRIBUTE)
    else:
        setattr(module, _ATTRIBUTE, compute)
    return module


def configured(make: Callable[[], nn.Module], compute: Compute) -> Callable[[], nn.Module]:
    """A factory (an AM's) whose every module computes as `compute` says."""
    if compute.plain:
        return make

    def build() -> nn.Module:
        return configure(make(), compute)

    return build


def compute_of(module: nn.Module) -> Compute:
    return getattr(module, _ATTRIBUTE, None) or Compute()


@contextlib.contextmanager
def autocast_for(module: nn.Module, device_type: str) -> Iterator[None]:
    """bf16 autocast while `module` computes, when it is marked so; otherwise nothing."""
    if compute_of(module).precision == "bf16":
        with torch.autocast(device_type, dtype=torch.bfloat16):
            yield
    else:
        yield


def prepare_input(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Images in the part's memory format (a no-op for other inputs)."""
    if compute_of(module).channels_last and inputs.dim() == 4:
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def as_float32(output):
    """A low-precision floating result back to float32 (differentiably); others unchanged."""
    if torch.is_tensor(output) and output.dtype in (torch.bfloat16, torch.float16):
        return output.float()
    return output
