"""Out of memory, told apart from any other failure, and what a restart changes to survive it.

Three errors mean a process ran out of memory: torch.OutOfMemoryError (CUDA, or any torch
allocator), Python's MemoryError (the host), and Ray's OutOfMemoryError (its memory monitor
killed a worker before the kernel's OOM killer could). An actor turns the first two into
ActorOutOfMemory, which says which actor it was; the Ray backend turns any of them into
OutOfMemory, a WorkerLost the run's recovery handles with a smaller setting instead of
replacing the actors as they were.

The settings lowered are layout settings only (config/effects.py), so a run that survived
gives the metrics of one that never failed, and a resume accepts the changed setting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from fslsage_ray.config.schema import RuntimeConfig
from fslsage_ray.runtime.backend import WorkerLost

__all__ = [
    "ActorOutOfMemory",
    "OutOfMemory",
    "Shrink",
    "is_out_of_memory",
    "out_of_memory_in",
    "smaller_setting",
]

CLIENT, SERVER = "client", "server"  # the roles an out-of-memory error is charged to


def is_out_of_memory(exc: BaseException) -> bool:
    """A torch allocation (CUDA or not) or a Python allocation that failed."""
    return isinstance(exc, torch.OutOfMemoryError | MemoryError)


def first_line(exc: BaseException) -> str:
    """`Type: first line of the message` (CUDA's message runs over several lines)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class ActorOutOfMemory(Exception):
    """Raised by an actor in place of an out-of-memory error: which actor, and what failed.

    Its own type (not a MemoryError) so that the driver finds it however many actor calls
    it passed through (a client actor waiting on the server's reply re-raises the server's)."""

    def __init__(self, role: str, where: str, what: str) -> None:
        super().__init__(role, where, what)  # args: what pickling rebuilds it from
        self.role, self.where, self.what = role, where, what

    def __str__(self) -> str:
        return f"out of memory in the {self.where} ({self.what})"


class OutOfMemory(WorkerLost):
    """A worker ran out of memory; `role` is CLIENT, SERVER or None (Ray killed a worker
    without saying which)."""

    def __init__(self, role: str | None, where: str, what: str) -> None:
        super().__init__(f"out of memory in {where} ({what})")
        self.role, self.where, self.what = role, where, what


def out_of_memory_in(exc: BaseException, depth: int = 8) -> OutOfMemory | None:
    """The out-of-memory error an actor reported, however deep in the chain of actor calls
    (a Ray task error's `cause`, or a Python `__cause__`); None: another failure."""
    seen: BaseException | None = exc
    for _ in range(depth):
        if seen is None:
            return None
        if isinstance(seen, ActorOutOfMemory):
            return OutOfMemory(seen.role, f"the {seen.where}", seen.what)
        if is_out_of_memory(seen):  # raised by code that does not say where it ran
            return OutOfMemory(None, "a worker", first_line(seen))
        seen = getattr(seen, "cause", None) or seen.__cause__
    return None


@dataclass(frozen=True)
class Shrink:
    """One step down: the runtime settings to restart with, and the change in words."""

    runtime: RuntimeConfig
    change: str  # `runtime.key a -> b`


def smaller_setting(runtime: RuntimeConfig, role: str | None) -> Shrink | None:
    """The next setting that lowers the failed actor's peak memory; None: none is left.

    First the in-flight window (runtime.max_inflight_uploads), halved down to 1: it bounds
    the exchanges a client actor keeps open (each a SplitFed batch's autograd graph until its
    dL/dz comes back) and the uploads a server actor holds queued until their turn, so it
    lowers both kinds of actor. Then the clients' state kept in memory: a budget of 0 sends
    every idle client's state (model, optimiser, AM; on the server, its per-client copies and
    alignment buffers) to local disk until the client is next scheduled, so resident memory
    no longer grows with the clients an actor hosts. That is what fewer clients per actor
    would buy, without more processes competing for the same node or GPU (which would add a
    process's baseline each, and a CUDA context each, to the very memory that ran out).
    """
    window = runtime.max_inflight_uploads
    if window > 1:
        return _step(runtime, "max_inflight_uploads", window, max(1, window // 2))
    budgets = {CLIENT: "client_state_budget_gb", SERVER: "server_state_budget_gb"}
    for key in [budgets[role]] if role in budgets else list(budgets.values()):
        if getattr(runtime, key) != 0:
            return _step(runtime, key, getattr(runtime, key), 0.0)
    return None


def _step(runtime: RuntimeConfig, key: str, old, new) -> Shrink:
    shown = "null (all in memory)" if old is None else old
    return Shrink(dataclasses.replace(runtime, **{key: new}), f"runtime.{key} {shown} -> {new}")


def smallest_text(runtime: RuntimeConfig) -> str:
    """The settings a second failure happened at, for the stop line."""
    return (
        f"runtime.max_inflight_uploads={runtime.max_inflight_uploads}, "
        f"client_state_budget_gb={runtime.client_state_budget_gb}, "
        f"server_state_budget_gb={runtime.server_state_budget_gb}"
    )
