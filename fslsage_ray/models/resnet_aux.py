"""Auxiliary models for the ResNet-18 split (the spec's AM-size ablation).

Each maps the cut-layer activations z (128 x H x W) to class logits. ``two_blocks`` is the
default: one stage shaped like layer3, so the AM sees z the way the server's first stage does.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import nn

from fslsage_ray.models.errors import ModelError
from fslsage_ray.models.resnet_blocks import fresh_resnet18_server, init_resnet_, resnet_stage

RESNET18_AUX = ("linear", "one_block", "two_blocks", "server_copy")


def _stage_head(blocks: int, num_classes: int) -> nn.Sequential:
    """``blocks`` BasicBlocks 128->256 (stride 2 first), global average pool, linear."""
    head = nn.Sequential(
        OrderedDict(
            layer=resnet_stage(128, 256, blocks=blocks, stride=2),
            avgpool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(1),
            fc=nn.Linear(256, num_classes),
        )
    )
    return init_resnet_(head)


def build_resnet18_aux(name: str, num_classes: int, cut_shape: tuple[int, ...]) -> nn.Module:
    """A fresh auxiliary model ``name`` for z of per-sample shape ``cut_shape``."""
    if name == "linear":
        return nn.Sequential(
            OrderedDict(flatten=nn.Flatten(1), fc=nn.Linear(math.prod(cut_shape), num_classes))
        )
    if name == "one_block":
        return _stage_head(1, num_classes)
    if name == "two_blocks":
        return _stage_head(2, num_classes)
    if name == "server_copy":
        return fresh_resnet18_server(num_classes)
    raise ModelError(
        f"unknown aux model {name!r} for resnet18; choose one of: {', '.join(RESNET18_AUX)}"
    )
