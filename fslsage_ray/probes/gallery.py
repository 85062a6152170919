"""Reconstructions beside their originals, for a person to look at: from a finished run.

The columns say how well the server inverts the cut (PSNR, SSIM); a figure shows what that
means. This replays the reconstruction probe on a run folder's last checkpoint (the global
client part the server held after the last round), with the run's own probe settings, and
draws the first images of the probe set above what the attack rebuilt from their
activations. It reads the run and writes one image file; it changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fslsage_ray.config import config_from_dict
from fslsage_ray.experiment import WorldSpec, build_template, load_data
from fslsage_ray.outputs.checkpoint import load_checkpoint
from fslsage_ray.probes.probe_set import probe_set
from fslsage_ray.probes.reconstruction import normaliser, rows
from fslsage_ray.tasks.classification import IMAGES, ImageClassification
from fslsage_ray.tasks.image_transforms import to_float_batch


def save_run_reconstructions(
    run_dir: str | Path, path: str | Path, count: int = 12, seed: int = 0
) -> tuple[Path, float]:
    """Write a grid (originals above reconstructions) of `count` training images of the run
    in `run_dir`, attacked through its final client part; returns the path and the PSNR (dB)
    of the images shown. Image tasks only. The images are drawn from the whole training
    split, seeded by the run's seed (the probe set's own draw needs the client partition)."""
    from fslsage_ray.probes import inversion
    from fslsage_ray.probes.image_quality import save_reconstruction_grid

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
    made = inversion.reconstruct_images(
        client,
        to_float_batch(rows(data.test, settings.public_rows)[IMAGES], spec.max_value),
        originals := to_float_batch(shown[IMAGES], spec.max_value),
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
    return save_reconstruction_grid(originals, made.reconstructions, path, count), made.psnr_db
