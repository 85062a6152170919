"""The reconstruction attack (probes/inversion.py, probes/image_quality.py) as plain functions.

An attack that always scores well or always badly would say nothing about a method, so both
ends are pinned: through an identity cut the decoder rebuilds the images (> 30 dB) and the
tokens (~all), through a cut of pure noise it does no better than the public baseline. The
metrics agree with values worked out by hand, and an attack leaves the client part and
torch's global random state exactly as it found them.
"""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

pytest.importorskip("torchmetrics")

from fslsage_ray.probes.image_quality import (  # noqa: E402
    psnr,
    reconstruction_grid,
    save_reconstruction_grid,
    ssim,
)
from fslsage_ray.probes.inversion import (  # noqa: E402
    InversionSettings,
    reconstruct_images,
    recover_tokens,
)

CPU = torch.device("cpu")
NOISE_TOLERANCE_DB = 0.5
VOCABULARY = 24


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are tiny: on a shared 2-core machine two intra-op threads mostly wait
    for each other (measured 3-8x slower), so the module runs on one and then restores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Public (first 1200) and probe (last 200) digits, float (N, 1, 8, 8) in [0, 1]."""
    images = torch.as_tensor(load_digits().images, dtype=torch.float32).unsqueeze(1) / 16.0
    return images[:1200], images[-200:]


class NoiseCut(nn.Module):
    """Activations independent of the input: fresh noise on every call, from a generator of
    its own (so the global stream stays untouched)."""

    def __init__(self, shape: tuple[int, ...], seed: int = 7) -> None:
        super().__init__()
        self.shape, self.seed, self.calls = shape, seed, 0

    def forward(self, inputs: torch.Tensor, **context) -> torch.Tensor:
        self.calls += 1
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.calls)
        return torch.randn((inputs.shape[0], *self.shape), generator=generator)


class EmbeddingCut(nn.Module):
    """A text client part shaped like GPT2Client: (tokens, attention_mask) -> (N, T, E)."""

    def __init__(self, vocabulary: int, width: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocabulary, width)
        self.mix = nn.Linear(width, width)

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.mix(self.wte(tokens)) * attention_mask.unsqueeze(-1)


def skewed_tokens(count: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens with a clearly most frequent one (so the baseline is not trivial) and masks
    that leave a ragged tail of padding uncounted."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.linspace(3.0, 0.2, VOCABULARY)
    tokens = torch.multinomial(weights, count * length, replacement=True, generator=generator)
    tokens = tokens.reshape(count, length)
    lengths = torch.randint(length // 2, length + 1, (count,), generator=generator)
    mask = (torch.arange(length) < lengths.unsqueeze(1)).long()
    return tokens, mask


# --- the metrics --------------------------------------------------------------------------


def test_psnr_matches_hand_values():
    references = torch.zeros(3, 1, 8, 8)
    images = torch.stack([torch.full((1, 8, 8), 0.1), torch.full((1, 8, 8), 0.5), references[2]])
    got = psnr(images, references)
    assert got[0].item() == pytest.approx(20.0, abs=1e-4)  # 10 log10(1 / 0.01)
    assert got[1].item() == pytest.approx(10 * math.log10(1 / 0.25), abs=1e-4)
    assert math.isinf(got[2].item())  # an exact copy


def test_ssim_matches_hand_values():
    # Flat images: no variance, so SSIM is the luminance term (2ab + C1) / (a^2 + b^2 + C1)
    # with C1 = (0.01 * range)^2, at every pixel (reflection padding keeps them flat).
    a, b, c1 = 0.2, 0.4, 0.01**2
    flat = ssim(torch.full((1, 1, 8, 8), a), torch.full((1, 1, 8, 8), b))
    assert flat.item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-5)
    textured = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(textured, textured), torch.ones(2))
    assert ssim(textured, 1 - textured).max().item() < 0  # anti-correlated structure


# --- images -------------------------------------------------------------------------------


def test_decoder_through_an_identity_cut_rebuilds_the_images(digits):
    public, probe = digits
    got = reconstruct_images(
        nn.Identity(),
        public,
        probe,
        InversionSettings(steps=200, lr=3e-3, batch_size=32),
        torch.Generator().manual_seed(0),
        CPU,
    )
    assert got.reconstructions.shape == probe.shape
    assert 0.0 <= got.reconstructions.min() and got.reconstructions.max() <= 1.0
    assert got.psnr_db > 30.0, got
    assert got.ssim > 0.95, got
    assert got.mean_psnr_db < 15.0  # the bar is far below: the test separates the two


def test_decoder_through_pure_noise_does_not_beat_the_mean_image(digits):
    public, probe = digits
    got = reconstruct_images(
        NoiseCut((4, 4, 4)),
        public,
        probe,
        InversionSettings(steps=100, lr=3e-3, batch_size=32),
        torch.Generator().manual_seed(0),
        CPU,
    )
    assert got.psnr_db <= got.mean_psnr_db + NOISE_TOLERANCE_DB, got


def test_optimisation_through_a_known_cut_recovers_the_images(digits):
    public, probe = digits
    cut = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
    settings = InversionSettings(method="optimisation", steps=150, lr=0.05, batch_size=100)
    got = reconstruct_images(cut, public, probe[:100], settings, torch.Generator(), CPU)
    assert got.psnr_db > got.mean_psnr_db + 5.0, got


def test_the_client_part_and_the_global_random_stream_are_untouched(digits):
    public, probe = digits
    torch.manual_seed(3)
    cut = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    cut.train()
    before = {k: v.clone() for k, v in cut.state_dict().items()}
    rng_before = torch.get_rng_state()
    for method in ("decoder", "optimisation"):
        reconstruct_images(
            cut,
            public[:200],
            probe[:20],
            InversionSettings(method=method, steps=5, batch_size=16),
            torch.Generator().manual_seed(1),
            CPU,
            normalise=lambda x: (x - 0.3) / 0.4,
        )
    assert torch.equal(torch.get_rng_state(), rng_before)
    after = cut.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm stats too
    assert cut.training and all(p.requires_grad and p.grad is None for p in cut.parameters())


def test_the_same_seed_gives_the_same_reconstruction(digits):
    public, probe = digits
    cut = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU())

    def attack(seed: int):
        settings = InversionSettings(steps=20, batch_size=32)
        return reconstruct_images(
            cut, public[:300], probe[:20], settings, torch.Generator().manual_seed(seed), CPU
        )

    first, again, other = attack(5), attack(5), attack(6)
    assert torch.equal(first.reconstructions, again.reconstructions)
    assert first.psnr_db == again.psnr_db and first.ssim == again.ssim
    assert not torch.equal(first.reconstructions, other.reconstructions)


def test_bad_settings_and_inputs_are_refused(digits):
    public, probe = digits
    with pytest.raises(ValueError, match="method"):
        InversionSettings(method="gan")
    with pytest.raises(ValueError, match="steps"):
        InversionSettings(steps=0)
    with pytest.raises(ValueError, match="same"):
        reconstruct_images(
            nn.Identity(), public, probe[:, :, :4], InversionSettings(), torch.Generator(), CPU
        )


def test_the_grid_shows_originals_above_reconstructions(digits, tmp_path):
    from PIL import Image

    _, probe = digits
    path = save_reconstruction_grid(probe[:6], 1 - probe[:6], tmp_path / "grid" / "r.png")
    with Image.open(path) as picture:
        width, height = picture.size
    assert width > height > 0


def test_the_grid_is_a_figure_a_notebook_shows_inline(digits):
    """Jupyter draws an object with `_repr_png_` as an image: the grid needs no pyplot."""
    import io

    from PIL import Image

    _, probe = digits
    figure = reconstruction_grid(probe[:5], 1 - probe[:5], title="originals above")
    assert len(figure.axes) == 10  # two rows of five
    assert figure._suptitle.get_text() == "originals above"
    with Image.open(io.BytesIO(figure._repr_png_())) as picture:
        assert picture.format == "PNG"
        assert picture.size[0] > picture.size[1] > 0


# --- text ---------------------------------------------------------------------------------


def test_tokens_through_an_embedding_cut_are_recovered():
    public_tokens, public_mask = skewed_tokens(200, 12, seed=0)
    probe_tokens, probe_mask = skewed_tokens(40, 12, seed=1)
    torch.manual_seed(0)
    cut = EmbeddingCut(VOCABULARY, 16)
    rng_before = torch.get_rng_state()
    got = recover_tokens(
        cut,
        public_tokens,
        public_mask,
        probe_tokens,
        probe_mask,
        InversionSettings(steps=300, lr=3e-3, batch_size=32),
        torch.Generator().manual_seed(0),
        CPU,
    )
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert got.rate > 0.98, got
    assert 0.05 < got.baseline_rate < 0.3  # the most frequent token, a real bar


def test_tokens_through_noise_are_not_recovered_beyond_the_baseline():
    public_tokens, public_mask = skewed_tokens(200, 12, seed=0)
    probe_tokens, probe_mask = skewed_tokens(40, 12, seed=1)
    got = recover_tokens(
        NoiseCut((12, 16)),
        public_tokens,
        public_mask,
        probe_tokens,
        probe_mask,
        InversionSettings(steps=200, lr=3e-3, batch_size=32),
        torch.Generator().manual_seed(0),
        CPU,
    )
    assert got.rate <= got.baseline_rate + 0.05, got


def test_optimised_soft_tokens_recover_an_embedding_cut():
    public_tokens, public_mask = skewed_tokens(100, 8, seed=0)
    probe_tokens, probe_mask = skewed_tokens(16, 8, seed=1)
    torch.manual_seed(0)
    got = recover_tokens(
        EmbeddingCut(VOCABULARY, 16),
        public_tokens,
        public_mask,
        probe_tokens,
        probe_mask,
        InversionSettings(method="optimisation", steps=200, lr=0.1, batch_size=16),
        torch.Generator().manual_seed(0),
        CPU,
    )
    assert got.rate > 0.9, got
