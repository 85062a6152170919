"""The steps of a round that a backend executes, in order; algorithms say which they need."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LocalPhase:
    """Every client runs its local iterations start <= it < stop (stop None: to the end)."""

    start: int
    stop: int | None


@dataclass(frozen=True)
class ServerJobPhase:
    """The server applies the uploads so far, then runs one job per participant (see
    jobs.py), wherever runtime.align_on says."""

    label: str  # what the progress display calls it, e.g. "aligning AMs"


Phase = LocalPhase | ServerJobPhase
