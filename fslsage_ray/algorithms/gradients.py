"""The three gradient computations FSL-SAGE is built from (spec: "FSL-SAGE", steps 2-3).

All losses are batch means of cross-entropy over logits, so the estimate g_hat and the true
cut-layer gradient g* carry the same 1/batch normalisation when computed on the same batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gradient_estimate(
    aux_model: nn.Module, smashed: torch.Tensor, labels: torch.Tensor, create_graph: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """g_hat(z, y) = d/dz CE(a(z), y): the AM's stand-in for the server's gradient.

    Only the input gradient is taken, so the AM's own parameters get no .grad from a client
    step (the spec: clients never update the AM). Returns (g_hat, loss).
    """
    z = smashed.detach().requires_grad_(True)
    loss = F.cross_entropy(aux_model(z), labels)
    (g_hat,) = torch.autograd.grad(loss, z, create_graph=create_graph)
    return g_hat, loss.detach()


def true_cut_gradient(
    server_model: nn.Module, smashed: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """g*(z, y) = d/dz CE(s(z), y) with the server model as it is now; no parameter step."""
    z = smashed.detach().requires_grad_(True)
    loss = F.cross_entropy(server_model(z), labels)
    (g_star,) = torch.autograd.grad(loss, z)
    return g_star.detach(), loss.detach()


def alignment_loss(
    aux_model: nn.Module, smashed: torch.Tensor, labels: torch.Tensor, g_star: torch.Tensor
) -> torch.Tensor:
    """Sum over samples and elements of (g_hat - g*)^2; differentiable in the AM's parameters.

    g_hat is itself a gradient, so this needs second-order backprop (create_graph=True).
    """
    g_hat, _ = gradient_estimate(aux_model, smashed, labels, create_graph=True)
    return (g_hat - g_star).pow(2).sum()


def relative_error(g_hat: torch.Tensor, g_star: torch.Tensor) -> tuple[float, float]:
    """(||g_hat - g*||^2, ||g*||^2) as floats, summed so callers can pool several batches."""
    return float((g_hat - g_star).pow(2).sum()), float(g_star.pow(2).sum())
