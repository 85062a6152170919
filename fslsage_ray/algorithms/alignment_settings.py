"""FSL-SAGE's own settings: how the auxiliary models are calibrated (spec "FSL-SAGE", step 3).

Torch-free: the config loader builds them (as `algorithm.alignment`, or the old top-level
`alignment` section) where torch may not be installed.
"""

from __future__ import annotations

from dataclasses import dataclass

from fslsage_ray.config.effects import results
from fslsage_ray.config.errors import ConfigError

ITERATION0 = ("auto", "before_alignment", "after_alignment")


@dataclass(frozen=True)
class AlignmentConfig:
    """FSL-SAGE's auxiliary-model calibration (fsl_sage and fsl_sage_lazy)."""

    every: int = results(10)  # l: alignment in rounds with t % l == 0 (round 0 included)
    epochs: int = results(100)  # passes over the alignment buffer per alignment
    batch_size: int = results(1000)  # samples per alignment step
    buffer_size: int = results(1000)  # newest uploaded samples kept per client (FIFO)
    lazy: bool = results(False)  # fit to the gradients stored at upload instead of recomputing
    group_size: int = results(1)  # AMs fitted together as one vectorised model (torch.func.vmap;
    # other float sums than one at a time), consecutive clients by id, the same groups on any
    # layout; for GPUs: on CPU it measured slower (benchmarks/RESULTS.md). Text and dropout
    # AMs are fitted one at a time
    iteration0: str = results("auto")  # in an alignment round, the AM a client's first local
    # step (it = 0) goes through: "before_alignment" (the AM it held, the step taken before the
    # server's step and the fit, as on the authors' llm branch, src/algos/fsl_sage.py:52-101),
    # "after_alignment" (it waits for the fitted AM, as on their master branch) or "auto":
    # what algorithm.server_order implies (interleaved: before; client_major: after)

    def __post_init__(self) -> None:
        checks = (
            (self.every >= 1, f"alignment.every (l) must be >= 1, got {self.every}"),
            (self.epochs >= 0, "alignment.epochs must be >= 0"),
            (self.batch_size >= 1, "alignment.batch_size must be >= 1"),
            (self.buffer_size >= 1, "alignment.buffer_size must be >= 1"),
            (self.group_size >= 1, "alignment.group_size must be >= 1"),
            (
                self.iteration0 in ITERATION0,
                f"alignment.iteration0 must be one of {ITERATION0}, got {self.iteration0!r}",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
