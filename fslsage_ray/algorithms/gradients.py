"""The three gradient computations FSL-SAGE is built from (spec: "FSL-SAGE", steps 2-3).

Every loss is the task's training loss (a batch mean of cross-entropy for images), so the
estimate g_hat and the true cut-layer gradient g* carry the same normalisation when
computed on the same batch. `context` is what the parts take besides z (an attention mask).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from fslsage_ray.tasks.base import Task, forward
from fslsage_ray.tasks.classification import CROSS_ENTROPY

Context = Mapping[str, torch.Tensor]


def gradient_estimate(
    aux_model: nn.Module,
    smashed: torch.Tensor,
    targets: torch.Tensor,
    task: Task = CROSS_ENTROPY,
    context: Context | None = None,
    create_graph: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """g_hat(z, y) = d/dz loss(a(z), y): the AM's stand-in for the server's gradient.

    Only the input gradient is taken, so the AM's own parameters get no .grad from a client
    step (the spec: clients never update the AM). Returns (g_hat, loss).
    """
    z = smashed.detach().requires_grad_(True)
    loss = task.loss(forward(aux_model, z, context or {}), targets)
    (g_hat,) = torch.autograd.grad(loss, z, create_graph=create_graph)
    return g_hat, loss.detach()


def true_cut_gradient(
    server_model: nn.Module,
    smashed: torch.Tensor,
    targets: torch.Tensor,
    task: Task = CROSS_ENTROPY,
    context: Context | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """g*(z, y) = d/dz loss(s(z), y) with the server model as it is now; no parameter step."""
    z = smashed.detach().requires_grad_(True)
    loss = task.loss(forward(server_model, z, context or {}), targets)
    (g_star,) = torch.autograd.grad(loss, z)
    return g_star.detach(), loss.detach()


def alignment_loss(
    aux_model: nn.Module,
    smashed: torch.Tensor,
    targets: torch.Tensor,
    g_star: torch.Tensor,
    task: Task = CROSS_ENTROPY,
    context: Context | None = None,
) -> torch.Tensor:
    """Sum over samples and elements of (g_hat - g*)^2; differentiable in the AM's parameters.

    g_hat is itself a gradient, so this needs second-order backprop (create_graph=True).
    """
    g_hat, _ = gradient_estimate(aux_model, smashed, targets, task, context, create_graph=True)
    return (g_hat - g_star).pow(2).sum()


def relative_error(g_hat: torch.Tensor, g_star: torch.Tensor) -> tuple[float, float]:
    """(||g_hat - g*||^2, ||g*||^2) as floats, summed so callers can pool several batches."""
    return float((g_hat - g_star).pow(2).sum()), float(g_star.pow(2).sum())
