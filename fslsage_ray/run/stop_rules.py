"""The run.max_* and run.stop_at_* rules: a callback that ends a run after the round that
meets one, before run.rounds."""

from __future__ import annotations

from typing import Any

from fslsage_ray.algorithms.ledger import GIB
from fslsage_ray.config.schema import RunConfig
from fslsage_ray.outputs.callbacks import Row, RunCallback


def stop_reason(run: RunConfig, row: dict[str, Any]) -> str | None:
    """Why the run ends after this round before run.rounds, if it does."""
    if run.max_gib is not None and row["comm_bytes_cum"] >= run.max_gib * GIB:
        return f"communication budget of {run.max_gib} GiB spent"
    acc = row.get("test_acc")
    if run.stop_at_accuracy is not None and acc is not None and acc >= run.stop_at_accuracy:
        return f"test accuracy {acc:.4f} reached the target {run.stop_at_accuracy}"
    loss = row.get("test_loss")
    if run.stop_at_loss is not None and loss is not None and loss <= run.stop_at_loss:
        return f"test loss {loss:.4f} reached the target {run.stop_at_loss}"
    if run.max_minutes is not None and row["elapsed_s"] >= 60 * run.max_minutes:
        return f"time limit of {run.max_minutes} minutes passed"
    return None


class StopRules(RunCallback):
    """The config's budgets and targets."""

    def __init__(self, run: RunConfig) -> None:
        self.run = run

    def on_round_recorded(self, row: Row) -> str | None:
        return stop_reason(self.run, dict(row))
