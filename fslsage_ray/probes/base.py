"""What a probe is, and what it may read.

A probe is built once per run from its settings (`probes.<section>`) and the config. At the
start it is asked whether it applies: it refuses (ProbeRefused, one line, before any worker
starts) what it can never measure, or names why its columns will be NaN for this method
("n/a": stealing for a method that gives clients no AM), so a missing value never looks like
a measured zero. On a probe round it measures: probes on the server read a `ProbeSite`;
ledger probes count the round's messages on the driver (every round, so counts are exact).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from fslsage_ray.algorithms.base import Algorithm
from fslsage_ray.config import Config
from fslsage_ray.config.errors import ConfigError
from fslsage_ray.tasks.base import Arrays, Task

Message = tuple[int, int, str, int]  # (client id, step, kind, bytes), as the ledger books it


class ProbeRefused(ConfigError):
    """A listed probe cannot measure anything for this method or task (one line)."""


@dataclass
class ProbeSite:
    """What a probe on the server host reads: copies in eval mode that it must not change.

    `client` holds the round's aggregated client part (FedAvg: the whole model), `head` the
    server's evaluation model, `aux` the AM a client holds after this round (None: the
    method gives clients none), `probe_set` the run's probe examples (clients' training
    rows), `test` the test split (the server's public data is its first rows)."""

    config: Config
    task: Task
    client: nn.Module
    head: nn.Module
    aux: nn.Module | None
    probe_set: Arrays
    test: Arrays
    device: torch.device


class Probe(ABC):
    """One probe. Subclasses set `name` (its registered name), `columns` (every column it
    writes, NaN on a round it cannot measure) and `on_server`."""

    name: ClassVar[str]
    on_server: ClassVar[bool] = True  # False: measured on the driver from the ledger

    def __init__(self, settings: Any, config: Config, task: Task) -> None:
        self.settings = settings
        self.config = config
        self.task = task

    @abstractmethod
    def columns(self) -> tuple[str, ...]:
        """The metrics.parquet columns it writes on a probe round."""

    def not_applicable(self, algorithm: Algorithm) -> str | None:
        """Why its columns are NaN for this method (None: it measures). Raise ProbeRefused
        for a combination it can never measure."""
        return None

    def measure(self, site: ProbeSite, generator: torch.Generator) -> dict[str, float]:
        """Its columns on this probe round (server probes); randomness from `generator`."""
        raise NotImplementedError(f"probe {self.name} does not measure on the server")

    # --- ledger probes ----------------------------------------------------------------------
    def observe(self, t: int, messages: Sequence[Message]) -> None:  # noqa: B027 - optional
        """Every round: the messages the round's ledger booked (ledger probes)."""

    def ledger_columns(self) -> dict[str, float]:
        """Its columns from what `observe` counted so far (ledger probes)."""
        raise NotImplementedError(f"probe {self.name} reads no messages")

    def state(self) -> dict[str, Any]:
        """What must survive a checkpoint (cumulative counts); {} for stateless probes."""
        return {}

    def restore(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - stateless default
        """Back to a checkpoint's `state()`."""


def nan_columns(probe: Probe) -> dict[str, float]:
    return {c: float("nan") for c in probe.columns()}
