"""ResNet-18 (torchvision, ImageNet-style, unresized inputs) cut after layer2.

Client = conv1, bn1, relu, maxpool, layer1, layer2 (683,072 parameters; z is 128x4x4 on 32x32
inputs). Server = layer3, layer4, avgpool, flatten, fc. conv1 and maxpool are kept as in the
ImageNet model, as in the authors' experiments.

For ``in_channels != 3`` conv1 is replaced by a 7x7/2 conv with that many input channels,
initialised like torchvision's convs; the rest of the network is unchanged. With 3 channels the
split network has exactly the weights ``torchvision.models.resnet18`` draws from the same seed.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import TYPE_CHECKING

from torch import nn

from fslsage_ray.models.errors import ModelError
from fslsage_ray.models.resnet_aux import RESNET18_AUX, build_resnet18_aux
from fslsage_ray.models.resnet_blocks import resnet18_server
from fslsage_ray.models.sizes import conv_output_size
from fslsage_ray.models.split import SplitModel

if TYPE_CHECKING:
    from torchvision.models import ResNet

CUT_CHANNELS = 128


def split_resnet(model: ResNet) -> tuple[nn.Sequential, nn.Sequential]:
    """Cut a torchvision ResNet after layer2; the parts share (not copy) the model's modules."""
    client = nn.Sequential(
        OrderedDict(
            conv1=model.conv1,
            bn1=model.bn1,
            relu=model.relu,
            maxpool=model.maxpool,
            layer1=model.layer1,
            layer2=model.layer2,
        )
    )
    return client, resnet18_server(model.layer3, model.layer4, model.fc)


def resnet18_cut_shape(image_size: int) -> tuple[int, int, int]:
    """Per-sample shape of z: conv1 (/2), maxpool (/2), layer2 (/2)."""
    size = conv_output_size(image_size, kernel=7, stride=2, padding=3)
    size = conv_output_size(size, kernel=3, stride=2, padding=1)
    size = conv_output_size(size, kernel=3, stride=2, padding=1)
    return (CUT_CHANNELS, size, size)


def build_resnet18(
    num_classes: int, in_channels: int, image_size: int, aux: str = "two_blocks"
) -> SplitModel:
    """The split ResNet-18; raises ModelError for an unknown ``aux`` name."""
    if aux not in RESNET18_AUX:
        raise ModelError(
            f"unknown aux model {aux!r} for resnet18; choose one of: {', '.join(RESNET18_AUX)}"
        )
    # torchvision imported here, not at module level: it costs seconds (it pulls in
    # torch._dynamo) that runs with other families, and `--help`, need not pay.
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    client, server = split_resnet(model)
    cut_shape = resnet18_cut_shape(image_size)
    make_aux = partial(build_resnet18_aux, aux, num_classes, cut_shape)
    return SplitModel(client=client, server=server, make_aux=make_aux, cut_shape=cut_shape)
