"""One read-only copy of a model's frozen weights per process, shared by every copy of it.

With LoRA (``model.transfer=trainable``) every client part starts from the same frozen base
(GPT-2 medium's client part: a 206 MB embedding and a block) and no one ever changes it:
only the adapters train. A process hosting many clients therefore keeps one base, the
template's, and each client's copy of the model holds its own trainable tensors and
buffers only. Sharing is safe because nothing writes a frozen parameter: optimizers skip
parameters without gradients, transfers of ``trainable`` state do not carry them, and
:func:`load_own_state` refuses a state that would change one instead of writing it.

Models without frozen parameters (the image models, GPT-2 trained from scratch) are copied
exactly as ``copy.deepcopy`` copies them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)

# Off only to show that sharing changes no result (a test runs both ways); a run never
# turns it off.
SHARE_FROZEN = True


class FrozenWeightChanged(ValueError):
    """A state would give a shared frozen weight another value."""


def frozen_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """Every frozen parameter by every name it has in ``module`` (tied ones under each)."""
    return {
        name: param
        for name, param in module.named_parameters(remove_duplicate=False)
        if not param.requires_grad
    }


def copy_sharing_frozen(module: M) -> M:
    """A deep copy of ``module`` whose frozen parameters are the original's own objects.

    Trainable parameters, buffers and everything else are copied as ``copy.deepcopy``
    copies them, so the copy trains independently; the frozen ones are the very same
    ``nn.Parameter`` objects, so N copies cost one frozen base. Moving a copy to a device
    moves the shared parameters once, for all copies.
    """
    if not SHARE_FROZEN:
        return copy.deepcopy(module)
    memo = {id(param): param for param in frozen_parameters(module).values()}
    return copy.deepcopy(module, memo)


def own_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` without its frozen parameters: what is this copy's own
    (trainable parameters and buffers), as a snapshot keeps it. The frozen base is the
    same in every process of a run (the template, built from the run's seed or pretrained
    weights), so a snapshot need not carry it."""
    frozen = frozen_parameters(module)
    return {k: v for k, v in module.state_dict().items() if k not in frozen}


def load_own_state(
    module: nn.Module, state: Mapping[str, torch.Tensor], what: str = "state"
) -> None:
    """Load a state that has every non-frozen entry of ``module``; frozen entries may be
    there (a whole-state transfer, a checkpoint written before snapshots left them out) or
    not. Present ones are never written, only checked: they must equal the module's own
    values, since writing them would change every copy sharing them.

    Raises KeyError for missing non-frozen or unknown entries (as a strict load would) and
    FrozenWeightChanged for a frozen entry with another value.
    """
    frozen = frozen_parameters(module)
    own = {k: v for k, v in state.items() if k not in frozen}
    missing, unexpected = module.load_state_dict(own, strict=False)
    wrong = sorted(set(missing) - set(frozen)) + sorted(unexpected)
    if wrong:
        raise KeyError(f"{what} does not fit the model: {wrong[:5]}")
    for name in sorted(state.keys() & frozen.keys()):
        param = frozen[name]
        if not torch.equal(state[name].to(param.device, param.dtype), param.detach()):
            raise FrozenWeightChanged(
                f"{what} would change the frozen weight {name!r}, which is shared by every "
                "model copy in this process and must stay as the run built it"
            )
