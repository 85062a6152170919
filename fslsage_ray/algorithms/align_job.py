"""Fitting one client's AM to the server's true cut-layer gradients (spec: "FSL-SAGE", step 3),
as a job that runs wherever there is a free processor (algorithms/jobs.py): on the server,
or on the idle host of its client. Several jobs may be fitted together (aux_group.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fslsage_ray.algorithms.gradients import alignment_loss, gradient_estimate, relative_error
from fslsage_ray.algorithms.optim import dropout_rng, step_and_release, steps_taken
from fslsage_ray.algorithms.snapshot import to_cpu
from fslsage_ray.tasks.base import Task

Context = dict[str, torch.Tensor]
Chunk = tuple[torch.Tensor, torch.Tensor, Context, torch.Tensor]  # (z, targets, context, g*)


def estimation_error(aux: nn.Module, chunks: Sequence[Chunk], task: Task) -> float:
    """||g_hat - g*||^2 / ||g*||^2 pooled over the buffer."""
    err, norm = 0.0, 0.0
    for z, y, context, g_star in chunks:
        g_hat, _ = gradient_estimate(aux, z, y, task, context)
        e, n = relative_error(g_hat, g_star)
        err, norm = err + e, norm + n
    return err / norm if norm > 0 else float("nan")


def fit_aux_model(
    aux: nn.Module,
    optimizer: torch.optim.Optimizer,
    chunks: Sequence[Chunk],
    epochs: int,
    task: Task,
) -> tuple[float, float]:
    """Minimise the sum of squared gradient errors (spec step 3); (error before, after)."""
    aux.train()
    before = estimation_error(aux, chunks, task)
    for _ in range(epochs):
        for z, y, context, g_star in chunks:
            loss = alignment_loss(aux, z, y, g_star, task, context)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            step_and_release(optimizer)
    return before, estimation_error(aux, chunks, task)


def chunk_to(chunk: Chunk, device: torch.device) -> Chunk:
    z, y, context, g_star = chunk
    return (
        z.to(device),
        y.to(device),
        {k: v.to(device) for k, v in context.items()},
        g_star.to(device),
    )


@dataclass
class AlignJob:
    """Everything needed to fit one AM, wherever there is a free processor."""

    cid: int
    chunks: list[Chunk]  # on the CPU
    aux_state: dict[str, torch.Tensor]
    optim_state: dict[str, Any]
    epochs: int
    task: Task
    dropout_seed: int | None  # the run seed, where the AM uses dropout

    def run(self, aux: nn.Module, optimizer: torch.optim.Optimizer, where: str) -> AlignOutcome:
        """Fit `aux` (any module of the AM's shape) starting from the job's state."""
        aux.load_state_dict(self.aux_state)
        optimizer.load_state_dict(self.optim_state)
        device = next(aux.parameters()).device
        chunks = [chunk_to(chunk, device) for chunk in self.chunks]
        step = steps_taken(optimizer)
        with dropout_rng(self.dropout_seed, "align", self.cid, step, device=device):
            before, after = fit_aux_model(aux, optimizer, chunks, self.epochs, self.task)
        return AlignOutcome(
            self.cid,
            to_cpu(aux.state_dict()),
            to_cpu(optimizer.state_dict()),
            before,
            after,
            where,
        )


@dataclass
class AlignOutcome:
    cid: int
    aux_state: dict[str, torch.Tensor]
    optim_state: dict[str, Any]
    rel_error_before: float
    rel_error_after: float
    where: str  # fitted on: "client" (its own AM: nothing to send down), "server" (the
    # server's copy), "elsewhere" (in a group: the server adopts it and sends it down)
