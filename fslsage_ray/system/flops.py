"""FLOPs of one sample's work, counted from the model's shapes (spec: issue 15, compute).

torch's FLOP formulas (torch.utils.flop_counter) count the matrix products and convolutions
of a real forward and backward pass on a two-sample batch, done once at setup on copies of
the parts. (FlopCounterMode itself cannot watch torch.autograd.grad on modules, which the
AM's gradient estimate uses, so a plain dispatch mode applies the same formulas.) The count
depends on shapes only, so simulated compute time is the same on any machine or layout.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from fslsage_ray.algorithms.gradients import alignment_loss, gradient_estimate, true_cut_gradient
from fslsage_ray.models import SplitModel
from fslsage_ray.tasks.base import Arrays, Task, forward

SAMPLES = 2  # BatchNorm needs more than one sample per channel in train mode


@dataclass(frozen=True)
class StepFlops:
    """FLOPs per sample of each kind of work."""

    client_fwd: float
    client_bwd: float  # parameter and input gradients of the client part
    server_step: float  # the server part's forward and backward with its loss
    aux_step: float  # the AM's forward and its gradient at the cut layer
    align: float  # one alignment epoch (second-order) per buffered sample
    cut_grad: float  # the server's g* for one buffered sample (non-lazy alignment)

    @property
    def full_step(self) -> float:
        """FedAvg: the whole model on the client."""
        return self.client_fwd + self.client_bwd + self.server_step


class _FlopCount(TorchDispatchMode):
    """Adds up torch's FLOP formulas over every operator that runs inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        formula = flop_registry.get(func._overloadpacket)
        if formula is None and func is not torch.ops.prim.device.default:
            out = func.decompose(*args, **kwargs)  # e.g. attention: counted through its parts
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def _count(fn: Callable[[], object]) -> float:
    counter = _FlopCount()
    with counter:
        fn()
    return counter.total / SAMPLES


def count_step_flops(template: SplitModel, task: Task, arrays: Arrays) -> StepFlops:
    """Count every kind of work once, on copies (the template's BatchNorm stays untouched)."""
    client, server = copy.deepcopy(template.client), copy.deepcopy(template.server)
    aux = copy.deepcopy(template.make_aux())
    for module in (client, server, aux):
        module.train()
    batch = task.batch(arrays, np.arange(SAMPLES), None, False, torch.device("cpu"))
    ctx, y = batch.context, batch.targets
    z = forward(client, batch.inputs, ctx)
    client_fwd = _count(lambda: forward(client, batch.inputs, ctx))
    z_in = z.detach().requires_grad_(True)
    out = forward(server, z_in, ctx)
    g = torch.autograd.grad(task.loss(out, y), z_in)[0]
    client_bwd = _count(lambda: z.backward(g))
    server_step = _count(lambda: task.loss(forward(server, z_in, ctx), y).backward())
    aux_step = _count(lambda: gradient_estimate(aux, z.detach(), y, task, ctx))
    g_star = _count(lambda: true_cut_gradient(server, z.detach(), y, task, ctx))
    align = _count(lambda: alignment_loss(aux, z.detach(), y, g, task, ctx).backward())
    return StepFlops(client_fwd, client_bwd, server_step, aux_step, align, g_star)
