"""How close a reconstructed image is to its original: PSNR and SSIM, and a figure of both.

The metrics come from torchmetrics (the `probes` extra), a maintained library that works on
torch tensors on any device; SSIM has enough subtle choices (window, constants, padding) that
a hand-written copy would make our numbers incomparable with the papers'. The import is lazy,
so the package imports without it and only a reconstruction probe needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 'fslsage-ray[probes]' (or: pip install torchmetrics)"
SSIM_WINDOW = 11  # Wang et al.'s Gaussian window (sigma 1.5), clipped to smaller images
SSIM_SIGMA = 1.5
GRID_DPI = 100  # the reconstruction grid's resolution, saved or shown inline


def _image_metrics():
    try:
        from torchmetrics.functional import image
    except ImportError as error:
        raise ImportError(f"PSNR and SSIM need torchmetrics: {INSTALL_HINT}") from error
    return image


def _check_pair(images: torch.Tensor, references: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape != references.shape:
        raise ValueError(
            "images and references must both have shape (N, C, H, W), got "
            f"{tuple(images.shape)} and {tuple(references.shape)}"
        )


def psnr(images: torch.Tensor, references: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image peak signal-to-noise ratio in dB, shape (N,); +inf for an exact copy."""
    _check_pair(images, references)
    metric = _image_metrics().peak_signal_noise_ratio
    return metric(
        images.float(), references.float(), data_range=data_range, reduction="none", dim=(1, 2, 3)
    )


def ssim_window(height: int, width: int) -> int:
    """The SSIM window side: 11 where the image allows, else the largest odd size that fits
    (7 for the 8x8 digits), since the library pads by reflection and needs pad < side."""
    side = min(SSIM_WINDOW, height, width)
    side -= 1 - side % 2  # odd
    if side < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {height}x{width}")
    return side


def ssim(images: torch.Tensor, references: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image structural similarity (Gaussian window, sigma 1.5, k1 0.01, k2 0.03), (N,)."""
    _check_pair(images, references)
    metric = _image_metrics().structural_similarity_index_measure
    return metric(
        images.float(),
        references.float(),
        gaussian_kernel=True,
        sigma=SSIM_SIGMA,
        kernel_size=ssim_window(images.shape[-2], images.shape[-1]),
        reduction="none",
        data_range=data_range,
    )


def reconstruction_grid(
    originals: torch.Tensor,
    reconstructions: torch.Tensor,
    max_images: int = 16,
    title: str | None = None,
) -> Figure:
    """A matplotlib figure with originals on the top row and their reconstructions beneath,
    so a person sees what the attack recovered. Returned rather than saved so a notebook can
    show it inline (Jupyter draws it as a PNG, without pyplot); `save_reconstruction_grid`
    writes it to a file.

    Images are float (N, C, H, W) in [0, 1], one or three channels. The figure is drawn
    without pyplot, so no global figure state changes and it works in headless workers.
    """
    _check_pair(originals, reconstructions)
    if originals.shape[1] not in (1, 3):
        raise ValueError(f"a grid needs 1 or 3 channels, got {originals.shape[1]}")
    from fslsage_ray.outputs.plots import PlotFigure  # draws inline in Jupyter, no pyplot

    count = min(int(originals.shape[0]), max_images)
    figure = PlotFigure()
    figure.set_dpi(GRID_DPI)
    figure.set_size_inches(1.1 * count + 0.9, 2.4 + (0.3 if title else 0.0))
    axes = figure.subplots(2, count, squeeze=False)
    rows = (("original", originals), ("reconstructed", reconstructions))
    for row, (label, images) in enumerate(rows):
        for column in range(count):
            axis = axes[row][column]
            picture = images[column].detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
            if picture.shape[-1] == 1:
                axis.imshow(picture[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                axis.imshow(picture)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row][0].set_ylabel(label, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def save_reconstruction_grid(
    originals: torch.Tensor,
    reconstructions: torch.Tensor,
    path: str | Path,
    max_images: int = 16,
) -> Path:
    """Write `reconstruction_grid`'s figure (originals above reconstructions) as a PNG, or
    any format matplotlib writes; returns the path."""
    figure = reconstruction_grid(originals, reconstructions, max_images)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=GRID_DPI)
    return path
