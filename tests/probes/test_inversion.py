"""The reconstruction attack: it recovers what an identity cut shows, learns nothing through
a cut of pure noise, leaves the client part and the global RNG alone, and repeats exactly."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

pytest.importorskip("torchmetrics", reason="the probes extra (torchmetrics) is not installed")

from fslsage_ray.data import load_digits_data  # noqa: E402
from fslsage_ray.probes.image_quality import psnr, ssim  # noqa: E402
from fslsage_ray.probes.inversion import (  # noqa: E402
    InversionSettings,
    reconstruct_images,
    recover_tokens,
)
from fslsage_ray.tasks.image_transforms import to_float_batch  # noqa: E402

CPU = torch.device("cpu")
FAST = InversionSettings(steps=150, lr=3e-3, batch_size=32)


class NoiseCut(nn.Module):
    """Activations independent of the input: fresh noise from the module's own stream."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape
        self.calls = 0

    def forward(self, x: torch.Tensor, attention_mask=None) -> torch.Tensor:
        self.calls += 1
        stream = torch.Generator().manual_seed(self.calls)
        return torch.randn(x.shape[0], *self.shape, generator=stream)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are tiny: on a shared 2-core machine two intra-op threads mostly wait
    for each other (3-8x slower), so the module runs on one thread and then restores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    bundle = load_digits_data()
    train = to_float_batch(bundle.train.images, bundle.max_value)
    test = to_float_batch(bundle.test.images, bundle.max_value)
    return train[:300], test[:60]


def test_psnr_and_ssim_match_hand_computed_values():
    reference = torch.zeros(1, 1, 8, 8)
    image = torch.full((1, 1, 8, 8), 0.1)  # MSE 0.01 -> 20 dB
    assert float(psnr(image, reference)) == pytest.approx(20.0, abs=1e-4)
    assert float(ssim(reference, reference)) == pytest.approx(1.0, abs=1e-6)
    # constant images: no variance, so SSIM is the luminance term (2ab + C1) / (a² + b² + C1)
    a, b, c1 = 0.2, 0.6, 0.01**2
    flat_a, flat_b = torch.full((1, 1, 8, 8), a), torch.full((1, 1, 8, 8), b)
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert float(ssim(flat_a, flat_b)) == pytest.approx(expected, abs=1e-4)


def test_identity_cut_is_reconstructed_and_noise_is_not(digits):
    public, probe = digits
    seen = reconstruct_images(nn.Identity(), public, probe, FAST, torch.Generator(), CPU)
    assert seen.psnr_db > 30.0 and seen.ssim > 0.95
    assert seen.reconstructions.shape == probe.shape
    blind = reconstruct_images(NoiseCut((8, 4, 4)), public, probe, FAST, torch.Generator(), CPU)
    assert blind.psnr_db <= blind.mean_psnr_db + 0.5
    assert math.isclose(seen.mean_psnr_db, blind.mean_psnr_db)


def test_client_part_and_global_rng_untouched_and_seed_repeats(digits):
    public, probe = digits
    torch.manual_seed(0)
    client = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()).train()
    before = {k: v.clone() for k, v in client.state_dict().items()}
    rng_before = torch.get_rng_state()
    settings = InversionSettings(steps=20, batch_size=16)
    runs = [
        reconstruct_images(
            client, public[:64], probe[:8], settings, torch.Generator().manual_seed(5), CPU
        )
        for _ in range(2)
    ]
    fitted = InversionSettings(method="optimisation", steps=5, lr=0.05, batch_size=4)
    reconstruct_images(client, public[:64], probe[:8], fitted, torch.Generator(), CPU)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert client.training and all(p.requires_grad for p in client.parameters())
    for key, value in client.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert torch.equal(runs[0].reconstructions, runs[1].reconstructions)


def _token_sets() -> tuple[torch.Tensor, ...]:
    stream = torch.Generator().manual_seed(3)
    public = torch.randint(0, 40, (120, 12), generator=stream)
    probe = torch.randint(0, 40, (30, 12), generator=stream)
    public_mask = torch.ones_like(public)
    probe_mask = torch.ones_like(probe)
    probe_mask[:, -3:] = 0  # padding: not counted
    return public, public_mask, probe, probe_mask


class EmbeddingCut(nn.Module):
    """Token embedding only: the hidden state names its token (the identity of text)."""

    def __init__(self) -> None:
        super().__init__()
        self.wte = nn.Embedding(40, 16)

    def forward(self, input_ids: torch.Tensor, attention_mask=None) -> torch.Tensor:
        return self.wte(input_ids)


@pytest.mark.parametrize(
    "settings",
    [
        InversionSettings(steps=200, lr=1e-2, batch_size=32),
        InversionSettings(method="optimisation", steps=100, lr=0.1, batch_size=30),
    ],
    ids=["decoder", "optimisation"],
)
def test_tokens_are_recovered_through_an_embedding_cut(settings):
    public, public_mask, probe, probe_mask = _token_sets()
    torch.manual_seed(0)
    cut = EmbeddingCut()
    rng_before = torch.get_rng_state()
    found = recover_tokens(
        cut, public, public_mask, probe, probe_mask, settings, torch.Generator(), CPU
    )
    assert found.rate > 0.97
    assert found.baseline_rate < 0.1
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_tokens_through_noise_stay_near_the_baseline():
    public, public_mask, probe, probe_mask = _token_sets()
    settings = InversionSettings(steps=200, lr=1e-2, batch_size=32)
    found = recover_tokens(
        NoiseCut((12, 16)), public, public_mask, probe, probe_mask, settings,
        torch.Generator(), CPU,
    )  # fmt: skip
    assert found.rate < found.baseline_rate + 0.06  # 40 equally likely tokens: chance 2.5%


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="method"):
        InversionSettings(method="guess")
    with pytest.raises(ValueError, match="steps"):
        InversionSettings(steps=0)
    with pytest.raises(ValueError, match="lr"):
        InversionSettings(lr=float("nan"))
