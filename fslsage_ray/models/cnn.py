"""A small split CNN for tiny images (scikit-learn digits, 8x8 grayscale) that trains in seconds.

Client: two 3x3 conv blocks (32 channels, the second with stride 2) -> z of shape 32 x S/2 x S/2.
Server: two 3x3 conv blocks (64 channels, the first with stride 2), global average pool, linear.
Works for any in_channels and any square image_size divisible by 4, so every stride-2 stage
halves the image exactly and the cut shape is simply S/2.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial

from torch import nn

from fslsage_ray.models.errors import ModelError
from fslsage_ray.models.split import SplitModel

CNN_AUX = ("linear", "one_block", "two_blocks", "server_copy")
CUT_CHANNELS = 32
WIDTH = 64


def conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (padding 1, no bias: BN follows), BatchNorm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _conv_head(blocks: int, num_classes: int) -> nn.Sequential:
    """``blocks`` conv blocks from the cut (first with stride 2), global average pool, linear."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["block1"] = conv_block(CUT_CHANNELS, WIDTH, stride=2)
    for i in range(2, blocks + 1):
        layers[f"block{i}"] = conv_block(WIDTH, WIDTH)
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten(1)
    layers["fc"] = nn.Linear(WIDTH, num_classes)
    return nn.Sequential(layers)


def cnn_client(in_channels: int) -> nn.Sequential:
    """Images (N, C, S, S) -> z (N, 32, S/2, S/2)."""
    return nn.Sequential(
        OrderedDict(
            block1=conv_block(in_channels, CUT_CHANNELS),
            block2=conv_block(CUT_CHANNELS, CUT_CHANNELS, stride=2),
        )
    )


def cnn_server(num_classes: int) -> nn.Sequential:
    """z -> logits: two conv blocks, pool, linear."""
    return _conv_head(2, num_classes)


def build_cnn_aux(name: str, num_classes: int, cut_shape: tuple[int, ...]) -> nn.Module:
    """A fresh auxiliary model ``name``.

    ``two_blocks`` has the server's shape here (the CNN server is only two blocks deep), but
    stays a separate name so every model offers the same ablation names.
    """
    if name == "linear":
        return nn.Sequential(
            OrderedDict(flatten=nn.Flatten(1), fc=nn.Linear(math.prod(cut_shape), num_classes))
        )
    if name == "one_block":
        return _conv_head(1, num_classes)
    if name == "two_blocks":
        return _conv_head(2, num_classes)
    if name == "server_copy":
        return cnn_server(num_classes)
    raise ModelError(f"unknown aux model {name!r} for cnn; choose one of: {', '.join(CNN_AUX)}")


def build_cnn(
    num_classes: int, in_channels: int, image_size: int, aux: str = "two_blocks"
) -> SplitModel:
    """The split CNN; ModelError for an unknown ``aux`` or an image size not divisible by 4."""
    if aux not in CNN_AUX:
        raise ModelError(f"unknown aux model {aux!r} for cnn; choose one of: {', '.join(CNN_AUX)}")
    if image_size % 4 != 0:
        raise ModelError(f"cnn needs an image size divisible by 4, got {image_size}")
    cut_shape = (CUT_CHANNELS, image_size // 2, image_size // 2)
    return SplitModel(
        client=cnn_client(in_channels),
        server=cnn_server(num_classes),
        make_aux=partial(build_cnn_aux, aux, num_classes, cut_shape),
        cut_shape=cut_shape,
    )
