"""The steps of a round that a backend executes, in order; algorithms say which they need."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LocalPhase:
    """Every client runs its local iterations start <= it < stop (stop None: to the end)."""

    start: int
    stop: int | None


@dataclass(frozen=True)
class AlignPhase:
    """The server finishes the uploads so far, fits every client's AM, and sends it down."""


Phase = LocalPhase | AlignPhase
