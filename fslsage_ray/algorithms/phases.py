"""The steps of a round that a backend executes, in order; algorithms say which they need."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LocalPhase:
    """Clients (all participants, or `clients`) run local iterations start <= it < stop
    (stop None: to the end). With `hold_last`, the last iteration uploads but holds its
    step until the client's next call, so that it can use what a server job sends first."""

    start: int
    stop: int | None
    clients: tuple[int, ...] | None = None
    hold_last: bool = False


@dataclass(frozen=True)
class ServerJobPhase:
    """The server applies the uploads so far, then runs one job per participant (or per
    client in `clients`; see jobs.py), wherever runtime.align_on says."""

    label: str  # what the progress display calls it, e.g. "aligning AMs"
    clients: tuple[int, ...] | None = None


Phase = LocalPhase | ServerJobPhase
