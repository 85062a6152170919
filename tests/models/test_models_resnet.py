"""ResNet-18 split: the spec's sizes and equivalence with torchvision's network."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from fslsage_ray.models import build_split_model, count_parameters
from fslsage_ray.models.resnet import split_resnet

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def split():
    torch.manual_seed(0)
    return build_split_model("resnet18", NUM_CLASSES, 3, 32)


def test_client_part_matches_spec(split) -> None:
    assert count_parameters(split.client) == 683_072
    assert split.cut_shape == (128, 4, 4)
    z = split.client(torch.randn(2, 3, 32, 32))
    assert z.shape == (2, 128, 4, 4)


def test_server_part_maps_cut_to_logits(split) -> None:
    assert count_parameters(split.server) == 10_498_570
    assert split.server(torch.randn(2, *split.cut_shape)).shape == (2, NUM_CLASSES)


def test_split_forward_equals_torchvision_on_shared_weights() -> None:
    torch.manual_seed(1)
    full = resnet18(weights=None, num_classes=NUM_CLASSES)
    client, server = split_resnet(full)
    full.train()
    full(torch.randn(8, 3, 32, 32))  # non-trivial BN running statistics
    full.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(server(client(x)), full(x), rtol=0, atol=1e-6)


def test_seeded_build_has_torchvision_weights() -> None:
    torch.manual_seed(7)
    full = resnet18(weights=None, num_classes=NUM_CLASSES).eval()
    torch.manual_seed(7)
    split = build_split_model("resnet18", NUM_CLASSES, 3, 32)
    split.client.eval()
    split.server.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(split.server(split.client(x)), full(x))
    total = count_parameters(split.client) + count_parameters(split.server)
    assert total == count_parameters(full)


@pytest.mark.parametrize(
    ("aux", "params"),
    [("linear", 20_490), ("one_block", 921_610), ("two_blocks", 2_102_282)],
)
def test_aux_sizes(aux: str, params: int) -> None:
    am = build_split_model("resnet18", NUM_CLASSES, 3, 32, aux=aux).make_aux()
    assert count_parameters(am) == params
    assert am(torch.randn(2, 128, 4, 4)).shape == (2, NUM_CLASSES)


def test_two_blocks_is_about_two_million() -> None:
    am = build_split_model("resnet18", 100, 3, 32).make_aux()
    assert 2_000_000 < count_parameters(am) < 2_200_000


def test_server_copy_is_a_fresh_server(split) -> None:
    copy = build_split_model("resnet18", NUM_CLASSES, 3, 32, aux="server_copy").make_aux()
    ours, theirs = split.server.state_dict(), copy.state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)
    assert not torch.equal(ours["layer3.0.conv1.weight"], theirs["layer3.0.conv1.weight"])
    copy.load_state_dict(ours)  # interchangeable with the real server part


def test_other_in_channels_replace_conv1() -> None:
    split = build_split_model("resnet18", NUM_CLASSES, 1, 32)
    conv1 = split.client.conv1
    assert isinstance(conv1, nn.Conv2d) and conv1.in_channels == 1
    assert count_parameters(split.client) == 683_072 - 2 * 64 * 7 * 7
    assert split.client(torch.randn(2, 1, 32, 32)).shape == (2, 128, 4, 4)


def test_cut_shape_follows_image_size() -> None:
    split = build_split_model("resnet18", NUM_CLASSES, 3, 64, aux="linear")
    assert split.cut_shape == (128, 8, 8)
    z = split.client(torch.randn(2, 3, 64, 64))
    assert tuple(z.shape[1:]) == split.cut_shape
    assert split.make_aux()(z).shape == (2, NUM_CLASSES)
