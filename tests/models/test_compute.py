"""model.precision=bf16 and model.channels_last: the parts compute so, hand back float32,
and keep their state dict; text models refuse channels-last."""

from __future__ import annotations

import copy

import pytest
import torch

from fslsage_ray.algorithms.gradients import alignment_loss, gradient_estimate
from fslsage_ray.config.schema import ConfigError, ModelConfig
from fslsage_ray.models.errors import ModelError
from fslsage_ray.models.families import GPT2, RESNET18
from fslsage_ray.tasks import forward
from fslsage_ray.tasks.classification import ImageClassification, ImageSpec
from fslsage_ray.tasks.compute import Compute
from fslsage_ray.tasks.language_model import LanguageModelling

CIFAR_LIKE = ImageClassification(ImageSpec(1.0, (0.0,) * 3, (1.0,) * 3, False), 10, 3, 32)


def _build(**model):
    torch.manual_seed(0)
    return RESNET18.build(CIFAR_LIKE, ModelConfig(name="resnet18", **model))


def _conv_dtypes(module: torch.nn.Module, run) -> set[torch.dtype]:
    """The output dtypes of every convolution while `run()` runs."""
    seen: set[torch.dtype] = set()
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
        for m in module.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_bf16_parts_compute_in_bf16_and_return_float32() -> None:
    split = _build(precision="bf16")
    x = torch.randn(4, 3, 32, 32)
    z = {}
    assert _conv_dtypes(split.client, lambda: z.update(z=forward(split.client, x, {}))) == {
        torch.bfloat16
    }
    assert z["z"].dtype == torch.float32
    logits = forward(split.server, z["z"], {})
    assert logits.dtype == torch.float32
    plain = _build()
    assert _conv_dtypes(plain.client, lambda: forward(plain.client, x, {})) == {torch.float32}
    assert not torch.equal(forward(plain.client, x, {}), z["z"])  # it did change the compute


def test_channels_last_parts_keep_their_state_dict_and_copies_keep_the_setting() -> None:
    split, plain = _build(channels_last=True), _build()
    conv = split.client.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert list(split.client.state_dict()) == list(plain.client.state_dict())
    pairs = zip(split.server.state_dict().values(), plain.server.state_dict().values(), strict=True)
    for a, b in pairs:
        assert torch.equal(a, b)  # same weights, another memory layout
    copied = copy.deepcopy(split.client)
    z = forward(copied, torch.randn(2, 3, 32, 32), {})
    assert z.is_contiguous(memory_format=torch.channels_last)
    aux = split.make_aux()
    assert next(p for p in aux.parameters() if p.dim() == 4).is_contiguous(
        memory_format=torch.channels_last
    )


def test_the_am_gradient_estimate_and_alignment_loss_stay_float32_in_bf16() -> None:
    split = _build(precision="bf16", channels_last=True)
    aux = split.make_aux()
    z, y = torch.randn(8, *split.cut_shape), torch.randint(0, 10, (8,))
    g_hat, _ = gradient_estimate(aux, z, y, CIFAR_LIKE)
    assert g_hat.dtype == torch.float32 and g_hat.shape == z.shape
    loss = alignment_loss(aux, z, y, torch.zeros_like(z), CIFAR_LIKE)
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in aux.parameters())


def test_unknown_precision_and_channels_last_text_models_are_refused() -> None:
    with pytest.raises(ConfigError, match="model.precision"):
        ModelConfig(precision="fp16")
    with pytest.raises(ModelError, match="channels_last"):
        GPT2.check(LanguageModelling(8, 16), ModelConfig(name="gpt2", channels_last=True))


def test_run_log_names_what_the_parts_compute_in() -> None:
    assert Compute().describe() == "fp32"
    assert Compute("bf16").describe() == "bf16 autocast"
    assert Compute("bf16", True).describe() == "bf16 autocast, channels-last"
    assert Compute("fp32", True).describe() == "fp32, channels-last"
