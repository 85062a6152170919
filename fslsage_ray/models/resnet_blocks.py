"""ResNet-18 building blocks built from scratch, initialised the way torchvision initialises them.

Auxiliary models and the ``server_copy`` head need fresh ResNet stages without building a whole
torchvision network (which would spend global-RNG draws on parts that are thrown away).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


def init_resnet_(module: nn.Module) -> nn.Module:
    """Re-initialise convs and BatchNorms as torchvision's ResNet does; Linear keeps its default."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


def resnet_stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """A stage of BasicBlocks shaped like torchvision's ``layerN`` (same state_dict keys)."""
    from torchvision.models.resnet import BasicBlock  # slow import, only when a ResNet is built

    downsample = None
    if stride != 1 or in_planes != planes:
        downsample = nn.Sequential(
            nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(planes),
        )
    layers = [BasicBlock(in_planes, planes, stride=stride, downsample=downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def resnet18_server(layer3: nn.Module, layer4: nn.Module, fc: nn.Linear) -> nn.Sequential:
    """Assemble the server part from its stages; one layout for the real split and for copies."""
    return nn.Sequential(
        OrderedDict(
            layer3=layer3,
            layer4=layer4,
            avgpool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(1),
            fc=fc,
        )
    )


def fresh_resnet18_server(num_classes: int) -> nn.Sequential:
    """A randomly initialised ResNet-18 server part (layer3, layer4, avgpool, fc)."""
    server = resnet18_server(
        resnet_stage(128, 256, blocks=2, stride=2),
        resnet_stage(256, 512, blocks=2, stride=2),
        nn.Linear(512, num_classes),
    )
    return init_resnet_(server)
