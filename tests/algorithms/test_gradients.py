"""The maths of FSL-SAGE on tiny tensors: gradient estimate, true gradient, alignment loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fslsage_ray.algorithms.gradients import (
    alignment_loss,
    gradient_estimate,
    relative_error,
    true_cut_gradient,
)


def _head(seed: int, d: int = 6, classes: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, classes))


def test_gradient_estimate_is_input_gradient_of_batch_mean_ce():
    aux = _head(0)
    z = torch.randn(5, 6)
    y = torch.tensor([0, 1, 2, 3, 0])
    g_hat, loss = gradient_estimate(aux, z, y)
    z_ref = z.clone().requires_grad_(True)
    ref_loss = F.cross_entropy(aux(z_ref), y)  # batch mean
    ref_loss.backward()
    torch.testing.assert_close(g_hat, z_ref.grad)
    assert abs(float(loss) - float(ref_loss.detach())) < 1e-6


def test_gradient_estimate_leaves_aux_parameters_without_grad():
    aux = _head(1)
    gradient_estimate(aux, torch.randn(3, 6), torch.tensor([0, 1, 2]))
    assert all(p.grad is None for p in aux.parameters())


def test_gradient_estimate_by_hand_for_a_linear_head():
    # For logits = W z, dCE/dz = W^T (softmax(Wz) - onehot(y)) / batch.
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, -1.0]]))
    z = torch.tensor([[0.2, 0.1, -0.3], [1.0, 0.0, 2.0]])
    y = torch.tensor([1, 0])
    g_hat, _ = gradient_estimate(lin, z, y)
    p = torch.softmax(z @ lin.weight.T, dim=1)
    expected = (p - F.one_hot(y, 2).float()) @ lin.weight / 2
    torch.testing.assert_close(g_hat, expected.detach())


def test_true_cut_gradient_matches_autograd_and_takes_no_step():
    server = _head(2)
    before = [p.clone() for p in server.parameters()]
    z, y = torch.randn(4, 6), torch.tensor([3, 2, 1, 0])
    g_star, _ = true_cut_gradient(server, z, y)
    z_ref = z.clone().requires_grad_(True)
    F.cross_entropy(server(z_ref), y).backward()
    torch.testing.assert_close(g_star, z_ref.grad)
    assert all(torch.equal(a, b) for a, b in zip(before, server.parameters(), strict=True))


def test_alignment_loss_is_sum_of_squared_errors_and_differentiable():
    aux, server = _head(3), _head(4)
    z, y = torch.randn(7, 6), torch.randint(0, 4, (7,))
    g_star, _ = true_cut_gradient(server, z, y)
    loss = alignment_loss(aux, z, y, g_star)
    g_hat, _ = gradient_estimate(aux, z, y)
    assert abs(float(loss.detach()) - float((g_hat - g_star).pow(2).sum())) < 1e-9
    loss.backward()  # second-order: gradients reach the AM's parameters
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in aux.parameters())


def test_fitting_the_alignment_loss_lowers_the_estimation_error():
    aux, server = _head(5), _head(6)
    z, y = torch.randn(64, 6), torch.randint(0, 4, (64,))
    g_star, _ = true_cut_gradient(server, z, y)
    err0, norm = relative_error(gradient_estimate(aux, z, y)[0], g_star)
    opt = torch.optim.Adam(aux.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        alignment_loss(aux, z, y, g_star).backward()
        opt.step()
    err1, _ = relative_error(gradient_estimate(aux, z, y)[0], g_star)
    assert err1 / norm < 0.5 * err0 / norm
    assert err1 / norm < 0.2


def test_a_copy_of_the_server_aligns_to_zero_error():
    server = _head(7)
    aux = _head(7)  # same seed: identical weights
    z, y = torch.randn(10, 6), torch.randint(0, 4, (10,))
    g_star, _ = true_cut_gradient(server, z, y)
    assert float(alignment_loss(aux, z, y, g_star).detach()) < 1e-14
