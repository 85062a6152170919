"""Fitting one client's AM to the server's true cut-layer gradients (spec: "FSL-SAGE", step 3),
as a job that runs wherever there is a free processor (algorithms/jobs.py): on the server,
or on the idle host of its client. Several jobs may be fitted together (aux_group.py).

Two error figures: the train-mode one (the AM as the clients use it, against g* as the
alignment fits it; both carry dropout draws where the model has dropout) and, where a job
carries eval-mode targets, the eval-mode one (dropout off on both sides), which shows how
well the AM fits without the dropout noise that bounds the first from below.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fslsage_ray.algorithms.gradients import alignment_loss, gradient_estimate, relative_error
from fslsage_ray.algorithms.jobs import AM_ERROR_FIGURES
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


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """`module` in eval mode (dropout off) with the random number generators untouched: a
    figure computed inside cannot shift a dropout draw that training makes afterwards, even
    if some module drew in eval mode. Restores each submodule's own mode."""
    modes = [(m, m.training) for m in module.modules()]
    devices = [p.device for p in module.parameters() if p.device.type == "cuda"][:1]
    with torch.random.fork_rng(devices=devices):
        module.eval()
        try:
            yield
        finally:
            for m, training in modes:
                m.training = training


def fit_aux_model(
    aux: nn.Module,
    optimizer: torch.optim.Optimizer,
    chunks: Sequence[Chunk],
    epochs: int,
    task: Task,
    eval_targets: Sequence[torch.Tensor] | None = None,
) -> AlignErrors:
    """Minimise the sum of squared gradient errors (spec step 3); the errors before and
    after, in train mode and (with `eval_targets`) in eval mode."""
    aux.train()
    errors = AlignErrors(before=estimation_error(aux, chunks, task))
    if eval_targets is not None:
        with eval_mode(aux):
            errors.eval_before = estimation_error(aux, with_targets(chunks, eval_targets), task)
    for _ in range(epochs):
        for z, y, context, g_star in chunks:
            loss = alignment_loss(aux, z, y, g_star, task, context)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            step_and_release(optimizer)
    errors.after = estimation_error(aux, chunks, task)
    if eval_targets is not None:
        with eval_mode(aux):
            errors.eval_after = estimation_error(aux, with_targets(chunks, eval_targets), task)
    return errors


def with_targets(chunks: Sequence[Chunk], targets: Sequence[torch.Tensor]) -> list[Chunk]:
    """The chunks' batches with other targets (one per chunk)."""
    return [(z, y, ctx, g) for (z, y, ctx, _), g in zip(chunks, targets, strict=True)]


@dataclass
class AlignErrors:
    """||g_hat - g*||^2 / ||g*||^2 before and after one fit, in train and eval mode (NaN:
    not computed)."""

    before: float = math.nan
    after: float = math.nan
    eval_before: float = math.nan
    eval_after: float = math.nan


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
    # g* with the server in eval mode, one per chunk, on the CPU; None: no eval-mode figure
    eval_targets: list[torch.Tensor] | None = None

    def run(self, aux: nn.Module, optimizer: torch.optim.Optimizer, where: str) -> AlignOutcome:
        """Fit `aux` (any module of the AM's shape) starting from the job's state."""
        aux.load_state_dict(self.aux_state)
        optimizer.load_state_dict(self.optim_state)
        device = next(aux.parameters()).device
        chunks = [chunk_to(chunk, device) for chunk in self.chunks]
        eval_targets = None
        if self.eval_targets is not None:
            eval_targets = [g.to(device) for g in self.eval_targets]
        step = steps_taken(optimizer)
        with dropout_rng(self.dropout_seed, "align", self.cid, step, device=device):
            errors = fit_aux_model(aux, optimizer, chunks, self.epochs, self.task, eval_targets)
        return AlignOutcome(
            self.cid,
            to_cpu(aux.state_dict()),
            to_cpu(optimizer.state_dict()),
            errors.before,
            errors.after,
            where,
            errors.eval_before,
            errors.eval_after,
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
    rel_error_eval_before: float = math.nan  # eval mode (dropout off); NaN: not computed
    rel_error_eval_after: float = math.nan

    def figures(self) -> dict[str, float]:
        """The job figures this fit reports (jobs.AM_ERROR_FIGURES)."""
        return dict(
            zip(
                AM_ERROR_FIGURES,
                (
                    self.rel_error_before,
                    self.rel_error_after,
                    self.rel_error_eval_before,
                    self.rel_error_eval_after,
                ),
                strict=True,
            )
        )
