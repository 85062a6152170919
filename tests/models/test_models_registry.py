"""Registry behaviour shared by all models: names, errors, seeding, fresh auxiliary models."""

import pickle

import pytest
import torch

from fslsage_ray.models import (
    ModelError,
    SplitModel,
    build_split_model,
    list_aux,
    list_models,
)

# (model, in_channels, image_size) small enough to keep the whole file fast
SHAPES = {"resnet18": (3, 32), "cnn": (1, 8)}
AUX_NAMES = ["linear", "one_block", "two_blocks", "server_copy"]


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_names() -> None:
    assert list_models() == ["cnn", "resnet18"]
    for model in list_models():
        assert list_aux(model) == AUX_NAMES


@pytest.mark.parametrize("model", sorted(SHAPES))
@pytest.mark.parametrize("aux", AUX_NAMES)
def test_every_aux_gives_logits_and_second_order_grads(model: str, aux: str) -> None:
    channels, size = SHAPES[model]
    split = build_split_model(model, 5, channels, size, aux=aux)
    assert isinstance(split, SplitModel)
    z = split.client(torch.randn(3, channels, size, size)).detach().requires_grad_(True)
    am = split.make_aux()
    logits = am(z)
    assert logits.shape == (3, 5)
    # alignment differentiates the AM's input gradient w.r.t. its parameters
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 4]))
    (g_hat,) = torch.autograd.grad(loss, z, create_graph=True)
    g_hat.pow(2).sum().backward()
    assert all(p.grad is not None for p in am.parameters())


@pytest.mark.parametrize("model", sorted(SHAPES))
def test_make_aux_is_fresh_and_seedable(model: str) -> None:
    channels, size = SHAPES[model]
    split = build_split_model(model, 10, channels, size, aux="one_block")
    torch.manual_seed(3)
    first = split.make_aux()
    second = split.make_aux()
    torch.manual_seed(3)
    again = split.make_aux()
    assert not _states_equal(first, second)
    assert _states_equal(first, again)
    with torch.no_grad():
        next(again.parameters()).add_(1.0)
    assert not _states_equal(first, again)  # no shared storage between instances


def test_server_copy_shares_nothing_with_server() -> None:
    split = build_split_model("cnn", 10, 1, 8, aux="server_copy")
    ptrs = {p.data_ptr() for p in split.server.parameters()}
    assert not ptrs & {p.data_ptr() for p in split.make_aux().parameters()}


@pytest.mark.parametrize("model", sorted(SHAPES))
def test_seeded_builds_are_deterministic(model: str) -> None:
    channels, size = SHAPES[model]
    builds = []
    for seed in (11, 11, 12):
        torch.manual_seed(seed)
        builds.append(build_split_model(model, 10, channels, size))
    a, b, c = builds
    assert _states_equal(a.client, b.client) and _states_equal(a.server, b.server)
    assert not _states_equal(a.client, c.client)


def test_split_model_pickles() -> None:
    split = build_split_model("cnn", 10, 1, 8)
    clone = pickle.loads(pickle.dumps(split))
    assert clone.cut_shape == split.cut_shape
    assert clone.make_aux()(torch.randn(2, *clone.cut_shape)).shape == (2, 10)


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(ModelError, match="unknown model 'vgg'.*cnn, resnet18"):
        build_split_model("vgg", 10, 3, 32)
    with pytest.raises(ModelError, match="cnn, resnet18"):
        list_aux("vgg")


@pytest.mark.parametrize("model", sorted(SHAPES))
def test_unknown_aux_lists_choices(model: str) -> None:
    channels, size = SHAPES[model]
    with pytest.raises(ModelError, match="linear, one_block, two_blocks, server_copy"):
        build_split_model(model, 10, channels, size, aux="three_blocks")


@pytest.mark.parametrize("bad", [{"num_classes": 0}, {"in_channels": -1}, {"image_size": 0}])
def test_bad_sizes_raise_without_touching_rng(bad: dict) -> None:
    args = {"num_classes": 10, "in_channels": 1, "image_size": 8} | bad
    state = torch.get_rng_state()
    with pytest.raises(ModelError, match="positive int"):
        build_split_model("cnn", **args)
    assert torch.equal(torch.get_rng_state(), state)


def test_model_error_is_a_value_error() -> None:
    assert issubclass(ModelError, ValueError)
