"""One round's built-in columns: a row of metrics.parquet before the simulated time, the
ledger's bytes and any callback's columns are added to it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fslsage_ray.algorithms.jobs import JobReport


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
    figures: dict[str, float] = field(default_factory=dict)  # job figures (job_figures)

    def as_row(self) -> dict[str, Any]:
        """Flat columns, the task's metrics where test accuracy and loss always stood and
        the job figures last."""
        row: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if key in ("test", "figures"):
                row.update(value)
            else:
                row[key] = value
        return row


def job_figures(named: Sequence[str], reports: Iterable[JobReport]) -> dict[str, float]:
    """Each figure averaged over the clients that report it: the algorithm's named figures
    first (NaN when none reports it), then any other reported figure."""
    values: dict[str, list[float]] = {}
    for report in reports:
        for key, value in report.metrics.items():
            values.setdefault(key, []).append(value)
    means = {key: float(np.mean(v)) for key, v in values.items()}
    figures = {name: means.pop(name, float("nan")) for name in named}
    figures.update(means)
    return figures
