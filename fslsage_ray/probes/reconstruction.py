"""Reconstruction by an honest-but-curious server: the wrapper around probes/inversion.py.

The server aggregates the client parts, so it holds the round's global client part, and it
sees the activations clients upload. Its auxiliary data is the first
`probes.reconstruction.public_rows` rows of the TEST split (disjoint from every client's
training data); it passes them through the client part, learns to invert the cut (or
fits inputs to activations, `method: optimisation`), and reconstructs the probe examples
from their activations. Images: PSNR and SSIM against the originals, beside the PSNR of
predicting the public set's mean image; text: the token recovery rate, beside always
predicting the public set's most frequent token.

The attack itself (inversion.py, image_quality.py) knows nothing of configs or Ray; it is
imported when the probe first measures, so a run without it never loads it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from fslsage_ray.algorithms.base import Algorithm
from fslsage_ray.probes.base import Probe, ProbeRefused, ProbeSite
from fslsage_ray.probes.cut import ATTENTION_MASK
from fslsage_ray.tasks.base import Arrays
from fslsage_ray.tasks.classification import IMAGES, ImageClassification
from fslsage_ray.tasks.image_transforms import normalize, to_float_batch
from fslsage_ray.tasks.language_model import INPUT_IDS, LanguageModelling

IMAGE_COLUMNS = ("recon_psnr_db", "recon_ssim", "recon_mean_psnr_db")
TEXT_COLUMNS = ("recon_token_rate", "recon_token_baseline")


def frozen_copy(module: nn.Module) -> nn.Module:
    """The attacker's copy of the client part: eval mode, no gradients; the run's own
    module is never touched."""
    out = copy.deepcopy(module).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def rows(arrays: Arrays, count: int) -> dict[str, np.ndarray]:
    return {k: v[:count] for k, v in arrays.items()}


class ReconstructionProbe(Probe):
    name = "reconstruction"

    def columns(self) -> tuple[str, ...]:
        return TEXT_COLUMNS if isinstance(self.task, LanguageModelling) else IMAGE_COLUMNS

    def not_applicable(self, algorithm: Algorithm) -> str | None:
        if not isinstance(self.task, (ImageClassification, LanguageModelling)):
            raise ProbeRefused(
                f"probes.list: reconstruction knows images and text, not the task "
                f"{type(self.task).__name__} of data.name={self.config.data.name}"
            )
        if "full" in algorithm.shared_parts:
            return "no activations cross a cut: clients send whole models"
        return None

    def measure(self, site: ProbeSite, generator: torch.Generator) -> dict[str, float]:
        from fslsage_ray.probes import inversion  # the attack, loaded only when it runs

        s = self.settings
        options = inversion.InversionSettings(
            method=s.method, steps=s.steps, lr=s.lr, batch_size=s.batch_size
        )
        client = frozen_copy(site.client)
        public = rows(site.test, s.public_rows)
        if isinstance(site.task, LanguageModelling):
            found = inversion.recover_tokens(
                client,
                torch.as_tensor(public[INPUT_IDS]),
                torch.as_tensor(public[ATTENTION_MASK]),
                torch.as_tensor(site.probe_set[INPUT_IDS]),
                torch.as_tensor(site.probe_set[ATTENTION_MASK]),
                options,
                generator,
                site.device,
            )
            return {"recon_token_rate": found.rate, "recon_token_baseline": found.baseline_rate}
        spec = site.task.spec
        made = inversion.reconstruct_images(
            client,
            to_float_batch(public[IMAGES], spec.max_value),
            to_float_batch(site.probe_set[IMAGES], spec.max_value),
            options,
            generator,
            site.device,
            normalise=normaliser(spec.mean, spec.std),
        )
        return {
            "recon_psnr_db": made.psnr_db,
            "recon_ssim": made.ssim,
            "recon_mean_psnr_db": made.mean_psnr_db,
        }


def normaliser(mean, std) -> Callable[[torch.Tensor], torch.Tensor]:
    """[0, 1] images -> the task's model input (what the client part is called on)."""
    return lambda x: normalize(x, mean, std)
