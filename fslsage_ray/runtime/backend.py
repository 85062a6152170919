"""The small interface every execution backend implements (in-process, Ray).

The coordinator drives a round through these calls; a backend decides only where and how
the work runs, never what it computes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fslsage_ray.algorithms.base import State
from fslsage_ray.algorithms.jobs import JobReport
from fslsage_ray.experiment import WorldSpec
from fslsage_ray.runtime.client_host import ClientResult
from fslsage_ray.runtime.server_host import Key
from fslsage_ray.tasks.base import Arrays


@dataclass(frozen=True)
class ServerStats:
    mean_loss: float  # server loss on this round's uploads (NaN without uploads)
    uploads: int
    busy_s: float  # time the server spent computing this round (uploads, alignment)


class WorkerLost(RuntimeError):
    """A worker died or stopped answering; the round's work must be redone elsewhere."""


class Backend(ABC):
    @abstractmethod
    def start(
        self,
        world: WorldSpec,
        train: Arrays,
        test: Arrays,
        parts: Sequence[np.ndarray],
    ) -> None:
        """Create the clients (all of them, with their data indices) and the server."""

    def validate(self, num_clients: int) -> None:  # noqa: B027 - optional hook
        """Refuse, before any run folder or actor exists, what can never run here."""

    @abstractmethod
    def num_batches(self) -> dict[int, int]:
        """Local iterations per client this round, K_i."""

    @abstractmethod
    def start_round(
        self,
        parts: Mapping[str, State],
        expected: Sequence[Key] | None,
        participants: Sequence[int],
    ) -> None:
        """Broadcast the aggregated parts to this round's participants; tell the server
        which uploads come (if ordered)."""

    @abstractmethod
    def run_local(
        self,
        start: int,
        stop: int | None,
        only: Sequence[int] | None = None,
        hold_last: bool = False,
    ) -> None:
        """Clients (all, or `only` these) run local iterations [start, stop); with
        `hold_last` the last one waits for the client's next call (see LocalPhase)."""

    @abstractmethod
    def run_server_jobs(
        self, it_limit: int, only: Sequence[int] | None = None
    ) -> dict[int, JobReport]:
        """Wait for the uploads before it_limit (of `only` these clients), run the server's
        job for every participant (or `only` these; algorithms/jobs.py), and deliver the
        results to their clients."""

    @abstractmethod
    def finish_round(self) -> tuple[list[ClientResult], ServerStats]:
        """Wait for all uploads, end the server's round; client results (by id), server stats."""

    @abstractmethod
    def evaluate(self, client_state: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """The task's test metrics of this client model with the current server model."""

    @abstractmethod
    def snapshot(self) -> dict[str, Any]:
        """{"clients": {cid: state}, "server": state} at a round boundary."""

    @abstractmethod
    def restore(self, snap: Mapping[str, Any]) -> None:
        """Put every client and the server back to a snapshot."""

    def maybe_resize(self) -> bool:
        """Between rounds: grow or shrink the worker pool to the resources now available."""
        return False

    def restart(self) -> None:
        """Replace lost workers with fresh ones (state comes from a following restore)."""
        raise WorkerLost(f"{self.describe()} cannot replace lost workers")

    def describe(self) -> str:
        return type(self).__name__

    def cluster_nodes(self) -> list[dict[str, float]]:
        """The resources of each node it runs on (for provenance); none in-process."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook: in-process has nothing to release
        """Release processes; safe to call twice."""
