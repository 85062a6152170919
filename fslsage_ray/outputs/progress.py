"""One progress line per run: round, the headline metric, GiB, and where the time goes.

tqdm.auto draws it as text on a terminal and as a widget in a Jupyter kernel (ipywidgets).
`ProgressBar` is the run callback that draws it."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from fslsage_ray.outputs.callbacks import Row, RunCallback, RunInfo
from fslsage_ray.outputs.headline import is_number, short_name

# Shown after the headline when a round has them and they are not the headline itself.
_ALSO_SHOWN = ("test_loss", "test_ppl")
_DIGITS = {"test_ppl": 2}


class Progress:
    def __init__(
        self, total_rounds: int, description: str, enabled: bool = True, headline: str = "test_acc"
    ) -> None:
        self.bar = tqdm(total=total_rounds, desc=description, unit="round", disable=not enabled)
        self.description = description
        self.headline = headline

    def phase(self, text: str) -> None:
        self.bar.set_description_str(text, refresh=True)

    def _metrics(self, row: dict[str, Any]) -> dict[str, str]:
        """The headline (acc=0.912 or loss=2.310) and the other test metrics present; tqdm
        sorts the names, as it did before the headline was configurable.
        """
        columns = [self.headline, *(c for c in _ALSO_SHOWN if c != self.headline and c in row)]
        shown = {}
        for column in columns:
            value = row.get(column)
            text = f"{value:.{_DIGITS.get(column, 3)}f}" if is_number(value) else "n/a"
            shown[short_name(column)] = text
        return shown

    def update(self, row: dict[str, Any]) -> None:
        self.bar.set_postfix(
            **self._metrics(row),
            GiB=f"{row['comm_gib_cum']:.3f}",
            align_s=f"{row['align_s']:.1f}",
            samples_s=f"{row['samples_per_s']:.0f}",
            refresh=False,
        )
        self.bar.update(1)

    def reset(self, rounds_done: int) -> None:
        """After a resume or a recovery: show the rounds already done."""
        self.bar.n = rounds_done
        self.bar.refresh()

    def close(self) -> None:
        """A finished bar names the run again (a stopped one keeps the phase it stopped in)."""
        if self.bar.n >= self.bar.total:
            self.bar.set_description_str(self.description, refresh=False)
        self.bar.close()


class ProgressBar(RunCallback):
    """The run's progress line, made when the run starts (not at all when disabled)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.progress: Progress | None = None

    def on_run_start(self, run: RunInfo) -> None:
        config = run.config.run
        self.progress = Progress(config.rounds, config.name, self.enabled, run.task.headline)

    def on_phase(self, text: str) -> None:
        if self.progress:
            self.progress.phase(text)

    def on_round_recorded(self, row: Row) -> None:
        if self.progress:
            self.progress.update(dict(row))

    def on_restore(self, rows: Sequence[Row]) -> None:
        if self.progress:
            self.progress.reset(len(rows))

    def on_run_end(self, ok: bool) -> None:
        if self.progress:
            self.progress.close()


def print_over_bars(line: str) -> None:
    """A line on stderr that an open progress bar does not overwrite."""
    with tqdm.external_write_mode(file=sys.stderr):
        print(line, file=sys.stderr, flush=True)
