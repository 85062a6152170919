"""One round's record (a row of metrics.parquet, before the ledger's columns) and the stop
conditions that read it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fslsage_ray.algorithms.ledger import GIB
from fslsage_ray.config.schema import RunConfig


@dataclass
class RoundRecord:
    round: int
    algorithm: str
    wall_s: float  # the whole round, evaluation included
    elapsed_s: float  # since the run started (resumes continue the count)
    local_s: float  # local steps, the server's uploads overlapping them
    align_s: float  # server jobs (FSL-SAGE's alignment)
    eval_s: float
    samples_per_s: float  # training samples per second of local time
    test: dict[str, float]  # the task's metrics, e.g. test_acc and test_loss
    train_loss: float  # the server's loss on this round's uploads
    client_loss: float  # the loss the clients descend (through their AM where they use one)
    uploads: int
    participants: int
    client_busy_s: float
    server_busy_s: float
    server_busy_frac: float
    aligned: bool  # server jobs ran this round
    am_rel_error_before: float = float("nan")  # job figures, averaged over clients
    am_rel_error_after: float = float("nan")
    extra: dict[str, float] = field(default_factory=dict)  # other job figures

    def as_row(self) -> dict[str, Any]:
        """Flat columns, the task's metrics where test accuracy and loss always stood."""
        row: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if key in ("test", "extra"):
                row.update(value)
            else:
                row[key] = value
        return row


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
