"""Each probe's own settings: the sub-sections `probes.dcor`, `probes.stealing` and
`probes.reconstruction` (registered in fslsage_ray.registry). Torch-free: read while a
config is validated. Every field is a `results` setting (see config/probes.py for why)."""

from __future__ import annotations

from dataclasses import dataclass

from fslsage_ray.config.effects import results
from fslsage_ray.config.errors import ConfigError

INVERSION_METHODS = ("decoder", "optimisation")


@dataclass(frozen=True)
class DcorSettings:
    max_positions: int = results(2048)  # text: token positions (of the probe set, counted by
    # the attention mask) drawn for the estimate; its cost grows with the square of this

    def __post_init__(self) -> None:
        if self.max_positions < 4:
            raise ConfigError(f"probes.dcor.max_positions must be >= 4, got {self.max_positions}")


@dataclass(frozen=True)
class StealingSettings:
    client: int = results(0)  # FSL-SAGE: whose AM (each client gets its own) is stolen; the
    # other AM methods hand every client the same averaged AM

    def __post_init__(self) -> None:
        if self.client < 0:
            raise ConfigError(f"probes.stealing.client must be >= 0, got {self.client}")


@dataclass(frozen=True)
class ReconstructionSettings:
    method: str = results("decoder")  # decoder (learned inversion) | optimisation (UnSplit-like)
    steps: int = results(300)  # decoder training steps, or optimisation steps per batch
    lr: float = results(1e-3)
    batch_size: int = results(64)
    public_rows: int = results(1000)  # the server's auxiliary data: the first rows of the TEST
    # split (disjoint from every client's training data), passed through the client part

    def __post_init__(self) -> None:
        if self.method not in INVERSION_METHODS:
            raise ConfigError(
                f"probes.reconstruction.method must be one of {INVERSION_METHODS}, "
                f"got {self.method!r}"
            )
        for key in ("steps", "batch_size", "public_rows"):
            if getattr(self, key) < 1:
                raise ConfigError(f"probes.reconstruction.{key} must be >= 1")
        if not self.lr > 0:
            raise ConfigError(f"probes.reconstruction.lr must be > 0, got {self.lr}")
