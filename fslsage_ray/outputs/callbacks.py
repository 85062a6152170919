"""Run callbacks: code that watches a run, adds columns to its rows, or ends it early.

The progress bar, the run.log round line, the trackers, provenance.json and the
`run.stop_at_*` / `run.max_*` rules are callbacks; a user's own plugs in the same way, from
code (`Simulation(config, callbacks=[MyProbe()])`) or from config
(`run.callbacks: ["my_package.probes:MyProbe"]`), without editing the package:

    class GradeColumn(RunCallback):
        def round_columns(self, row):
            return {"passed": row["test_acc"] >= 0.9}

        def on_round_recorded(self, row):
            return "good enough" if row["passed"] else None

A callback sees the run, never its models: what it adds to a row is stored beside the
learning columns and cannot change them (tests/run/test_callbacks.py holds this).

The events, in order: `on_run_start` once; per round `on_round_start`, `on_phase` as the
round moves on, `round_columns` (every callback, before the row is stored) and
`on_round_recorded` (every callback; the first reason returned stops the run after this
round); `on_restore` when the run continues from a checkpoint (a resume, or rounds redone
after a lost worker); `on_run_end` once, also after a failure or a stop signal.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fslsage_ray.config.errors import ConfigError

if TYPE_CHECKING:
    from fslsage_ray.config import Config
    from fslsage_ray.outputs.metrics import MetricsTable
    from fslsage_ray.tasks.base import Task

log = logging.getLogger("fslsage_ray")

Row = Mapping[str, Any]


@dataclass
class RunInfo:
    """What a callback may know of the run it watches (given to `on_run_start`)."""

    config: Config
    task: Task  # its metric_names and headline
    run_dir: Path | None  # the local run folder (None: write_outputs=False)
    location: str  # the folder or URI the user named, as messages show it
    metrics: MetricsTable  # the run's table (read it; the run alone writes it)
    provenance: dict[str, Any] = field(default_factory=dict)  # this start's entry

    @property
    def rows(self) -> Sequence[Row]:
        """Every row so far, restored ones included."""
        return self.metrics.rows


class RunCallback:
    """Override the events you need; each does nothing by default."""

    def on_run_start(self, run: RunInfo) -> None:
        """Before the first round (after a resume: before the first round not yet done)."""

    def on_round_start(self, round_idx: int) -> None:
        """Round `round_idx` is about to train."""

    def on_phase(self, text: str) -> None:
        """What the run does now, in a few words ("round 3: evaluating"), for a display."""

    def round_columns(self, row: Row) -> Mapping[str, Any]:
        """Columns to add to this round's row (it holds every built-in column already).
        A name the row already has is refused: a callback adds, it never replaces."""
        return {}

    def on_round_recorded(self, row: Row) -> str | None:
        """The round's row is stored; return a reason to stop the run after it, or None."""
        return None

    def on_restore(self, rows: Sequence[Row]) -> None:
        """The run continues after these rows (a resume, or a redo after a lost worker)."""

    def on_run_end(self, ok: bool) -> None:
        """The run ended (ok: all its rounds, or a stop rule); also after a failure."""


class CallbackList:
    """The run's callbacks, called in order; the run talks to this one object."""

    def __init__(self, callbacks: Sequence[RunCallback]) -> None:
        self.callbacks = list(callbacks)

    def on_run_start(self, run: RunInfo) -> None:
        for callback in self.callbacks:
            callback.on_run_start(run)

    def on_round_start(self, round_idx: int) -> None:
        for callback in self.callbacks:
            callback.on_round_start(round_idx)

    def on_phase(self, text: str) -> None:
        for callback in self.callbacks:
            callback.on_phase(text)

    def round_columns(self, row: Row) -> dict[str, Any]:
        """Every callback's columns, in callback order, each name new to the row."""
        added: dict[str, Any] = {}
        for callback in self.callbacks:
            for name, value in callback.round_columns(row).items():
                if name in row or name in added:
                    raise ValueError(
                        f"{type(callback).__name__}.round_columns adds column {name!r}, which "
                        "the row already has; a callback may only add new columns"
                    )
                added[name] = value
        return added

    def on_round_recorded(self, row: Row) -> str | None:
        """Every callback sees the row; the first reason given stops the run."""
        reasons = [callback.on_round_recorded(row) for callback in self.callbacks]
        return next((r for r in reasons if r), None)

    def on_restore(self, rows: Sequence[Row]) -> None:
        for callback in self.callbacks:
            callback.on_restore(rows)

    def on_run_end(self, ok: bool) -> None:
        """Every callback ends, even when one fails; after a successful run the first
        failure is raised, after a failed one only logged (the run's own error matters)."""
        first: Exception | None = None
        for callback in self.callbacks:
            try:
                callback.on_run_end(ok)
            except Exception as exc:
                if not ok:
                    log.warning("callback %s failed at the run's end: %s", callback, exc)
                first = first or exc
        if ok and first is not None:
            raise first


def load_callback(path: str) -> RunCallback:
    """The callback named "package.module:Name": a RunCallback subclass, or a function
    returning a callback, called without arguments. A bad name is one ConfigError line."""
    module_name, _, attribute = path.partition(":")
    where = f"run.callbacks entry {path!r}"
    if not module_name or not attribute:
        raise ConfigError(f"{where} must read 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where} cannot be imported: {exc}") from None
    make: Callable[[], Any] | None = getattr(module, attribute, None)
    if not callable(make):
        raise ConfigError(f"{where}: module {module_name} has no callable {attribute}")
    callback = make()
    if not isinstance(callback, RunCallback):
        raise ConfigError(f"{where} made a {type(callback).__name__}, not a RunCallback")
    return callback


def load_callbacks(paths: Sequence[str]) -> list[RunCallback]:
    return [load_callback(path) for path in paths]
