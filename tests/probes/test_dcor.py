"""The bias-corrected distance correlation: 1 for identical inputs, about 0 for independent
ones, and equal to the paper's formula worked out term by term on a small case."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from fslsage_ray.probes.dcor import distance_correlation, token_samples


def _by_hand(x: list[list[float]], z: list[list[float]]) -> float:
    """Székely & Rizzo (2014), eq. 3.1 and 3.2, with loops: U-centre each distance matrix,
    (A . B) = sum_{i != j} A_ij B_ij / (n (n - 3)), R* = (A . B) / sqrt((A . A)(B . B))."""
    n = len(x)

    def u_centred(points):
        d = [[math.dist(points[i], points[j]) for j in range(n)] for i in range(n)]
        row = [sum(d[i]) for i in range(n)]
        col = [sum(d[i][j] for i in range(n)) for j in range(n)]
        total = sum(row)
        return [
            [
                0.0
                if i == j
                else d[i][j] - row[i] / (n - 2) - col[j] / (n - 2) + total / ((n - 1) * (n - 2))
                for j in range(n)
            ]
            for i in range(n)
        ]

    def dot(a, b):
        return sum(a[i][j] * b[i][j] for i, j in itertools.product(range(n), range(n)) if i != j)

    a, b = u_centred(x), u_centred(z)
    return dot(a, b) / math.sqrt(dot(a, a) * dot(b, b))


def test_identical_inputs_give_one():
    x = torch.randn(50, 7, generator=torch.Generator().manual_seed(0))
    assert distance_correlation(x, x) == pytest.approx(1.0, abs=1e-12)
    # invariant to scale, shift and a rotation of either side: still the same information
    q, _ = torch.linalg.qr(torch.randn(7, 7, generator=torch.Generator().manual_seed(1)))
    assert distance_correlation(x, 3 * x @ q + 2) == pytest.approx(1.0, abs=1e-9)


def test_independent_inputs_give_about_zero():
    g = torch.Generator().manual_seed(2)
    x, z = torch.randn(400, 10, generator=g), torch.randn(400, 30, generator=g)
    assert abs(distance_correlation(x, z)) < 0.01
    # the plain (biased) estimator would be far from 0 here; a dependent pair is not
    assert distance_correlation(x, torch.tanh(x[:, :3])) > 0.3


def test_equals_the_formula_on_a_small_case():
    x = [[0.0, 1.0], [1.0, 0.5], [2.0, 2.0], [3.5, 1.0], [0.5, 3.0], [2.5, 0.0]]
    z = [[1.0], [0.0], [2.5], [3.0], [1.5], [0.5]]
    expected = _by_hand(x, z)
    got = distance_correlation(torch.tensor(x), torch.tensor(z))
    assert got == pytest.approx(expected, rel=1e-12)
    assert 0 < expected < 1


def test_refuses_too_few_or_unpaired_rows():
    with pytest.raises(ValueError, match="at least 4"):
        distance_correlation(torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="pair rows"):
        distance_correlation(torch.zeros(5, 2), torch.zeros(6, 2))


def test_text_positions_counted_by_the_mask():
    tokens = torch.tensor([[5, 6, 7, 0], [5, 8, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    states = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    x, z = token_samples(tokens, states, mask, 10, torch.Generator().manual_seed(0))
    assert x.shape == (5, 9) and z.shape == (5, 3)
    assert x.argmax(1).tolist() == [5, 6, 7, 5, 8]
    assert torch.equal(z[3], states[1, 0])
    x2, _ = token_samples(tokens, states, mask, 3, torch.Generator().manual_seed(0))
    assert len(x2) == 3  # drawn, at most max_positions
    # a state that is the one-hot token itself reveals it entirely
    assert distance_correlation(x, x.float()) == pytest.approx(1.0)
