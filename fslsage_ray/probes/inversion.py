"""Reconstruction by an honest-but-curious server: inputs recovered from cut activations.

Threat model: the server aggregates the client models, so it holds the current global client
part, and it sees every activation a client uploads. It also holds public data disjoint from
the clients' (passed in here). Two attacks, chosen by `InversionSettings.method`:

- "decoder" (learned inversion): pass the public inputs through the frozen client part and
  train a decoder from activations back to inputs; then decode the probe activations. For
  image feature maps (C', h, w) the decoder is convolutional and upsamples by transposed
  convolutions to the input size; for text hidden states (N, T, E) it is a per-position MLP
  to logits over the tokens the public text uses.
- "optimisation" (UnSplit-like): fit inputs by gradient descent so that the client part's
  output matches the observed activations. Images start from the public mean image, are
  kept in [0, 1] and carry a total-variation prior; text optimises a soft one-hot over the
  public vocabulary (fed through the client's token embedding by a forward hook) and takes
  its argmax as the recovered token.

Neither attack changes the client part (they work on a private frozen copy in eval mode) or
draws from a global random stream: every random number (decoder initialisation, batch
order, starting noise) comes from the caller's `generator`, so a probe is repeatable and
training is untouched.

A client part is called as every split part is, `tasks.base.forward(part, inputs, context)`:
images as `client_part(normalise(images))`, text as
`client_part(tokens, attention_mask=mask)` (models/gpt2.py's GPT2Client signature).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fslsage_ray.probes.image_quality import psnr, ssim
from fslsage_ray.tasks.base import forward

METHODS = ("decoder", "optimisation")
ACTIVATION_CHUNK = 256  # rows per no-grad forward pass when collecting activations
DECODER_WIDTH = 64  # channels (images) or hidden units (text) of the inversion decoder
MIN_UPSAMPLE_WIDTH = 16
TEXT_HIDDEN = 256
TV_WEIGHT = 0.05  # total-variation prior of the image optimisation, against a relative misfit
EPS = 1e-6


@dataclass(frozen=True)
class InversionSettings:
    """How hard the server tries. `lr` is Adam's step size for the decoder's weights or, for
    "optimisation", for the fitted pixels or token logits (there 0.01-0.1 suits better)."""

    method: str = "decoder"  # "decoder" (learned inversion) | "optimisation" (UnSplit-like)
    steps: int = 300  # decoder training steps, or optimisation steps per batch
    lr: float = 1e-3
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"inversion method must be one of {METHODS}, got {self.method!r}")
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"inversion {name} must be a positive int, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"inversion lr must be a positive number, got {self.lr!r}")


@dataclass
class ImageReconstruction:
    reconstructions: torch.Tensor  # float images in [0, 1], shape of the probe inputs (N, C, H, W)
    psnr_db: float  # mean over probe images, data range 1.0
    ssim: float  # mean SSIM
    mean_psnr_db: float  # PSNR of predicting the public set's mean image (baseline)


@dataclass
class TokenRecovery:
    rate: float  # fraction of probe tokens (positions counted by the mask) recovered exactly
    baseline_rate: float  # rate of always predicting the public set's most frequent token


# --- shared pieces ------------------------------------------------------------------------


def frozen_copy(client_part: nn.Module, device: torch.device) -> nn.Module:
    """A private copy in eval mode with no parameter gradients: the caller's module, its
    buffers (BatchNorm statistics) and its train/eval flag stay exactly as they were."""
    frozen = copy.deepcopy(client_part).to(device).eval()
    frozen.requires_grad_(False)
    return frozen


def seeded_build(build: Callable[[], nn.Module], generator: torch.Generator) -> nn.Module:
    """Build a module whose initialisation draws from `generator`, not the global stream.

    PyTorch layers initialise from the global CPU generator; we lend it a seed taken from
    `generator` and put its state back afterwards (CUDA's streams are not touched: the module
    is built on the CPU).
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        return build()


@torch.no_grad()
def activations(
    frozen: nn.Module, inputs: torch.Tensor, context: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """The client part's outputs for `inputs`, in chunks, as float32."""
    parts = []
    for start in range(0, inputs.shape[0], ACTIVATION_CHUNK):
        rows = slice(start, start + ACTIVATION_CHUNK)
        parts.append(forward(frozen, inputs[rows], {k: v[rows] for k, v in context.items()}))
    return torch.cat(parts).float()


def minibatches(count: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator:
    """`steps` index batches, each epoch a fresh permutation from `generator` (CPU)."""
    batch_size = min(batch_size, count)
    order = torch.randperm(count, generator=generator)
    position = 0
    for _ in range(steps):
        if position + batch_size > count:
            order, position = torch.randperm(count, generator=generator), 0
        yield order[position : position + batch_size]
        position += batch_size


class Standardise(nn.Module):
    """Per-feature standardisation with statistics of the public activations (what the
    server can compute), so one decoder learning rate suits cuts of any scale."""

    def __init__(self, public: torch.Tensor, feature_dim: int) -> None:
        super().__init__()
        dims = [d for d in range(public.ndim) if d != feature_dim]
        shape = [1] * public.ndim
        shape[feature_dim] = public.shape[feature_dim]
        self.register_buffer("mean", public.mean(dim=dims).reshape(shape))
        self.register_buffer("scale", public.std(dim=dims).reshape(shape).clamp_min(EPS))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.mean) / self.scale


# --- images -------------------------------------------------------------------------------


def image_decoder(cut_shape: tuple[int, ...], image_shape: tuple[int, int, int]) -> nn.Module:
    """A decoder from one sample's activations to an image of `image_shape`.

    Feature maps (C', h, w): two 3x3 convolutions at the cut's resolution, then one 2x2
    transposed convolution per doubling up to the image size (channels halving, at least
    16), a final 3x3 convolution to the image's channels, and a resize if the sizes are not
    a power of two apart. Flat activations (D,): a one-hidden-layer MLP. Outputs are linear
    (clamped to [0, 1] only when reconstructing), so an identity cut is learnt exactly.
    """
    channels, height, width = image_shape
    if len(cut_shape) == 1:
        return nn.Sequential(
            nn.Linear(cut_shape[0], DECODER_WIDTH * 4),
            nn.ReLU(),
            nn.Linear(DECODER_WIDTH * 4, channels * height * width),
            nn.Unflatten(1, image_shape),
        )
    if len(cut_shape) != 3:
        raise ValueError(
            f"image inversion needs activations of shape (C, H, W) or (D,), got {cut_shape}"
        )
    layers: list[nn.Module] = [
        nn.Conv2d(cut_shape[0], DECODER_WIDTH, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(DECODER_WIDTH, DECODER_WIDTH, 3, padding=1),
        nn.ReLU(),
    ]
    size, current = min(cut_shape[1], cut_shape[2]), DECODER_WIDTH
    while size < min(height, width):
        following = max(current // 2, MIN_UPSAMPLE_WIDTH)
        layers += [nn.ConvTranspose2d(current, following, 2, stride=2), nn.ReLU()]
        size, current = size * 2, following
    layers.append(nn.Conv2d(current, channels, 3, padding=1))
    return nn.Sequential(*layers, Resize((height, width)))


class Resize(nn.Module):
    """Bilinear resize to a fixed size; nothing when the size already matches."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == self.size:
            return x
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)


def _check_images(name: str, images: torch.Tensor) -> None:
    if images.ndim != 4 or not images.is_floating_point() or images.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty float tensor (N, C, H, W) in [0, 1]")


def reconstruct_images(
    client_part: nn.Module,
    public_images: torch.Tensor,
    probe_images: torch.Tensor,
    settings: InversionSettings,
    generator: torch.Generator,
    device: torch.device,
    *,
    normalise: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
) -> ImageReconstruction:
    """Reconstruct `probe_images` from their activations under `client_part`.

    Images are float (N, C, H, W) in [0, 1]; `normalise` turns them into the model's input
    (the task's mean/std). PSNR and SSIM are means over the probe images (data range 1); the
    baseline is predicting the public mean image for every probe image.
    """
    _check_images("public_images", public_images)
    _check_images("probe_images", probe_images)
    if public_images.shape[1:] != probe_images.shape[1:]:
        raise ValueError("public and probe images must have the same (C, H, W)")
    frozen = frozen_copy(client_part, device)
    public = public_images.to(device, torch.float32)
    probe = probe_images.to(device, torch.float32)
    observed = activations(frozen, normalise(probe), {})
    if settings.method == "decoder":
        public_z = activations(frozen, normalise(public), {})
        decoder = _train_image_decoder(public_z, public, settings, generator, device)
        with torch.no_grad():
            rebuilt = torch.cat([decoder(z) for z in observed.split(ACTIVATION_CHUNK)])
    else:
        start = public.mean(dim=0, keepdim=True)
        rebuilt = torch.cat(
            [
                _fit_images(frozen, normalise, z, start, settings)
                for z in observed.split(settings.batch_size)
            ]
        )
    rebuilt = rebuilt.clamp(0.0, 1.0)
    mean_image = public.mean(dim=0, keepdim=True).expand_as(probe)
    return ImageReconstruction(
        reconstructions=rebuilt.detach(),
        psnr_db=float(psnr(rebuilt, probe).mean()),
        ssim=float(ssim(rebuilt, probe).mean()),
        mean_psnr_db=float(psnr(mean_image, probe).mean()),
    )


def _train_image_decoder(
    public_z: torch.Tensor,
    public: torch.Tensor,
    settings: InversionSettings,
    generator: torch.Generator,
    device: torch.device,
) -> nn.Module:
    image_shape = tuple(public.shape[1:])
    decoder = seeded_build(
        lambda: nn.Sequential(
            Standardise(public_z, feature_dim=1),
            image_decoder(tuple(public_z.shape[1:]), image_shape),
        ),
        generator,
    ).to(device)
    optimiser = torch.optim.Adam(decoder.parameters(), lr=settings.lr)
    for rows in minibatches(len(public), settings.batch_size, settings.steps, generator):
        rows = rows.to(device)
        loss = F.mse_loss(decoder(public_z[rows]), public[rows])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return decoder.eval()


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (anisotropic TV)."""
    across = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    down = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    return across + down


def _fit_images(
    frozen: nn.Module,
    normalise: Callable[[torch.Tensor], torch.Tensor],
    observed: torch.Tensor,
    start: torch.Tensor,
    settings: InversionSettings,
) -> torch.Tensor:
    """UnSplit's inner loop: pixels fitted so the client part's output matches `observed`.

    The misfit is relative (divided by the activations' mean square), so TV_WEIGHT means the
    same for any cut's scale; pixels are clamped to [0, 1] after every step.
    """
    images = start.expand(observed.shape[0], *start.shape[1:]).clone().requires_grad_(True)
    optimiser = torch.optim.Adam([images], lr=settings.lr)
    scale = observed.pow(2).mean().clamp_min(EPS)
    for _ in range(settings.steps):
        misfit = F.mse_loss(forward(frozen, normalise(images), {}), observed) / scale
        loss = misfit + TV_WEIGHT * total_variation(images)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            images.clamp_(0.0, 1.0)
    return images.detach()


# --- text ---------------------------------------------------------------------------------


def recover_tokens(
    client_part: nn.Module,
    public_tokens: torch.Tensor,
    public_mask: torch.Tensor,
    probe_tokens: torch.Tensor,
    probe_mask: torch.Tensor,
    settings: InversionSettings,
    generator: torch.Generator,
    device: torch.device,
) -> TokenRecovery:
    """Recover `probe_tokens` (N, T) from the hidden states `client_part(tokens,
    attention_mask=mask)` returns.

    Candidates are the tokens the public text uses at its masked positions (a token the
    server never saw cannot be named by either attack, and the full GPT-2 vocabulary would
    make the soft one-hot too large). The rate counts probe positions where the mask is set.
    """
    for name, tokens, mask in (
        ("public", public_tokens, public_mask),
        ("probe", probe_tokens, probe_mask),
    ):
        if tokens.ndim != 2 or tokens.shape != mask.shape or tokens.is_floating_point():
            raise ValueError(f"{name} tokens must be integer (N, T) with a mask of that shape")
        if not bool(mask.bool().any()):
            raise ValueError(f"{name} mask selects no token")
    frozen = frozen_copy(client_part, device)
    public_tokens, public_mask = public_tokens.to(device), public_mask.to(device)
    probe_tokens, probe_mask = probe_tokens.to(device), probe_mask.to(device)
    public_counted = public_tokens[public_mask.bool()]
    vocabulary, counts = torch.unique(public_counted, return_counts=True)  # sorted
    most_frequent = vocabulary[counts.argmax()]
    observed = activations(frozen, probe_tokens, {"attention_mask": probe_mask})
    if settings.method == "decoder":
        public_h = activations(frozen, public_tokens, {"attention_mask": public_mask})
        decoder = _train_token_decoder(
            public_h, public_tokens, public_mask, vocabulary, settings, generator, device
        )
        with torch.no_grad():
            guesses = vocabulary[decoder(observed).argmax(dim=-1)]
    else:
        guesses = torch.cat(
            [
                _fit_tokens(frozen, h, m, vocabulary, settings, generator)
                for h, m in zip(
                    observed.split(settings.batch_size),
                    probe_mask.split(settings.batch_size),
                    strict=True,
                )
            ]
        )
    counted = probe_mask.bool()
    truth = probe_tokens[counted]
    return TokenRecovery(
        rate=float((guesses[counted] == truth).float().mean()),
        baseline_rate=float((truth == most_frequent).float().mean()),
    )


def _train_token_decoder(
    public_h: torch.Tensor,
    public_tokens: torch.Tensor,
    public_mask: torch.Tensor,
    vocabulary: torch.Tensor,
    settings: InversionSettings,
    generator: torch.Generator,
    device: torch.device,
) -> nn.Module:
    """A per-position MLP from a hidden state (E,) to logits over `vocabulary`, trained with
    cross-entropy on the public positions the mask counts; `batch_size` is in sequences."""
    embed = public_h.shape[-1]
    decoder = seeded_build(
        lambda: nn.Sequential(
            Standardise(public_h[public_mask.bool()], feature_dim=1),
            nn.Linear(embed, TEXT_HIDDEN),
            nn.GELU(),
            nn.Linear(TEXT_HIDDEN, len(vocabulary)),
        ),
        generator,
    ).to(device)
    labels = torch.searchsorted(vocabulary, public_tokens)
    optimiser = torch.optim.Adam(decoder.parameters(), lr=settings.lr)
    for rows in minibatches(len(public_h), settings.batch_size, settings.steps, generator):
        rows = rows.to(device)
        counted = public_mask[rows].bool()
        loss = F.cross_entropy(decoder(public_h[rows][counted]), labels[rows][counted])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return decoder.eval()


def token_embedding(frozen: nn.Module) -> nn.Embedding:
    """The client part's token embedding: its first nn.Embedding (GPT-2's wte)."""
    for module in frozen.modules():
        if isinstance(module, nn.Embedding):
            return module
    raise ValueError("optimisation-based token recovery needs a client part with an nn.Embedding")


def _fit_tokens(
    frozen: nn.Module,
    observed: torch.Tensor,
    mask: torch.Tensor,
    vocabulary: torch.Tensor,
    settings: InversionSettings,
    generator: torch.Generator,
) -> torch.Tensor:
    """Soft one-hot logits over `vocabulary` fitted so the hidden states match `observed`
    at the counted positions; the recovered token of a position is its argmax.

    The client part runs unchanged: a forward hook swaps its token embedding's output for
    the soft mixture of the candidate embeddings (token ids then only give the shape).
    """
    embedding = token_embedding(frozen)
    candidates = embedding.weight[vocabulary].detach()
    shape = (*observed.shape[:2], len(vocabulary))
    noise = torch.randn(shape, generator=generator)  # breaks the uniform start's symmetry
    logits = (0.01 * noise).to(observed.device).requires_grad_(True)
    handle = embedding.register_forward_hook(
        lambda module, inputs, output: torch.softmax(logits, dim=-1) @ candidates
    )
    placeholder = torch.zeros(observed.shape[:2], dtype=torch.long, device=observed.device)
    counted = mask.bool()
    scale = observed[counted].pow(2).mean().clamp_min(EPS)
    optimiser = torch.optim.Adam([logits], lr=settings.lr)
    try:
        for _ in range(settings.steps):
            hidden = forward(frozen, placeholder, {"attention_mask": mask})
            loss = F.mse_loss(hidden[counted], observed[counted]) / scale
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    finally:
        handle.remove()
    return vocabulary[logits.detach().argmax(dim=-1)]
