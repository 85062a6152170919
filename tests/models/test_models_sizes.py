"""Byte and parameter accounting used by the communication ledger."""

import torch
from torch import nn

from fslsage_ray.models import count_parameters, state_nbytes
from fslsage_ray.models.sizes import conv_output_size


def test_state_nbytes_counts_batchnorm_buffers() -> None:
    channels = 16
    bn = nn.BatchNorm2d(channels)
    # weight + bias (params) + running_mean + running_var (fp32) + num_batches_tracked (int64)
    assert state_nbytes(bn) == (2 * channels + 2 * channels) * 4 + 8
    assert count_parameters(bn) == 2 * channels


def test_state_nbytes_respects_dtype() -> None:
    lin = nn.Linear(5, 3)
    assert state_nbytes(lin) == (5 * 3 + 3) * 4
    assert state_nbytes(lin.to(torch.float64)) == (5 * 3 + 3) * 8


def test_count_parameters_includes_frozen_and_skips_buffers() -> None:
    model = nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2))
    model[0].weight.requires_grad_(False)
    assert count_parameters(model) == 4 * 2 + 2 + 2 + 2


def test_conv_output_size() -> None:
    assert conv_output_size(32, kernel=7, stride=2, padding=3) == 16
    assert conv_output_size(16, kernel=3, stride=2, padding=1) == 8
    assert conv_output_size(7, kernel=3, stride=2, padding=1) == 4
