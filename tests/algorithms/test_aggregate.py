"""Weighted aggregation over the full state dict (spec: FSL-SAGE step 4)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fslsage_ray.algorithms.aggregate import sample_weights, weighted_average


def test_weights_are_sample_fractions():
    assert sample_weights([1, 3]) == [0.25, 0.75]
    assert sum(sample_weights([5000] * 10)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        sample_weights([0, 0])


def test_weighted_average_by_hand():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(10)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(20)}
    out = weighted_average([a, b], sample_weights([100, 300]))
    torch.testing.assert_close(out["w"], torch.tensor([2.5, 5.0]))
    assert out["n"].dtype == torch.int64 and int(out["n"]) == 18  # 2.5 + 15 = 17.5 -> 18


def test_batchnorm_running_statistics_are_averaged():
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)) for _ in range(3)]
    for i, net in enumerate(nets):
        net.train()
        net(torch.randn(16, 3) * (i + 1))  # different running statistics
    states = [n.state_dict() for n in nets]
    weights = sample_weights([1, 2, 7])
    out = weighted_average(states, weights)
    assert set(out) == set(states[0])  # every entry, buffers included
    expected = sum(w * s["1.running_var"] for w, s in zip(weights, states, strict=True))
    torch.testing.assert_close(out["1.running_var"], expected)
    assert int(out["1.num_batches_tracked"]) == 1


def test_same_states_average_to_themselves_exactly():
    torch.manual_seed(1)
    state = nn.Linear(5, 5).state_dict()
    out = weighted_average([state] * 3, sample_weights([3, 3, 4]))
    for key, value in state.items():
        torch.testing.assert_close(out[key], value, rtol=0, atol=1e-7)
