"""Reconstructions beside their originals, for a person to look at: from a finished run.

The columns say how well the server inverts the cut (PSNR, SSIM); a figure shows what that
means. This replays the reconstruction probe on a run folder's last checkpoint (the global
client part the server held after the last round), with the run's own probe settings, and
draws training images above what the attack rebuilt from their activations: as an image
file (`save_run_reconstructions`) or as a figure a notebook shows inline
(`run_reconstruction_figure`). It reads the run; it changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fslsage_ray.config import config_from_dict
from fslsage_ray.experiment import WorldSpec, build_template, load_data
from fslsage_ray.outputs.checkpoint import load_checkpoint
from fslsage_ray.probes.probe_set import probe_set
from fslsage_ray.probes.reconstruction import normaliser, rows
from fslsage_ray.tasks.classification import IMAGES, ImageClassification
from fslsage_ray.tasks.image_transforms import to_float_batch

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class RunReconstructions:
    """Training images of a run and what the attack rebuilt from their activations."""

    originals: torch.Tensor  # (N, C, H, W) in [0, 1]
    reconstructions: torch.Tensor
    psnr_db: float  # over the images shown
    method: str  # the run's algorithm, for a title


def reconstruct_run(run_dir: str | Path, count: int = 12, seed: int = 0) -> RunReconstructions:
    """Attack `count` training images of the run in `run_dir` through its final client part,
    with the run's own reconstruction settings. Image tasks only. The images are drawn from
    the whole training split, seeded by the run's seed (the probe set's own draw needs the
    client partition)."""
    from fslsage_ray.probes import inversion

    payload = load_checkpoint(Path(run_dir))
    config = config_from_dict(payload["config"], saved=True)
    data = load_data(config)
    if not isinstance(data.task, ImageClassification):
        raise ValueError(f"reconstructions can be drawn for image tasks, not {config.data.name}")
    client = build_template(WorldSpec(config, data.task)).client
    client.load_state_dict(payload["global_parts"]["client"])
    settings = config.probes.settings("reconstruction")
    spec = data.task.spec
    every_row = [np.arange(len(data.train[IMAGES]))]
    shown = probe_set(data.train, every_row, count, config.run.seed)
    originals = to_float_batch(shown[IMAGES], spec.max_value)
    made = inversion.reconstruct_images(
        client,
        to_float_batch(rows(data.test, settings.public_rows)[IMAGES], spec.max_value),
        originals,
        inversion.InversionSettings(
            method=settings.method,
            steps=settings.steps,
            lr=settings.lr,
            batch_size=settings.batch_size,
        ),
        torch.Generator().manual_seed(seed),
        torch.device("cpu"),
        normalise=normaliser(spec.mean, spec.std),
    )
    return RunReconstructions(originals, made.reconstructions, made.psnr_db, config.algorithm.name)


def run_reconstruction_figure(run_dir: str | Path, count: int = 12, seed: int = 0) -> Figure:
    """Originals above reconstructions for the run in `run_dir`, as a figure a notebook shows
    inline (titled with the method and the PSNR of the images shown); see `reconstruct_run`."""
    from fslsage_ray.probes.image_quality import reconstruction_grid

    made = reconstruct_run(run_dir, count, seed)
    title = (
        f"{made.method}: training images (top) and what the server rebuilt from their "
        f"activations ({made.psnr_db:.1f} dB)"
    )
    return reconstruction_grid(made.originals, made.reconstructions, count, title=title)


def save_run_reconstructions(
    run_dir: str | Path, path: str | Path, count: int = 12, seed: int = 0
) -> tuple[Path, float]:
    """Write a grid (originals above reconstructions) of `count` training images of the run
    in `run_dir`, attacked through its final client part (see `reconstruct_run`); returns the
    path and the PSNR (dB) of the images shown."""
    from fslsage_ray.probes.image_quality import save_reconstruction_grid

    made = reconstruct_run(run_dir, count, seed)
    return save_reconstruction_grid(made.originals, made.reconstructions, path, count), made.psnr_db
