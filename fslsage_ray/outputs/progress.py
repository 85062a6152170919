"""One progress line per run: round, the headline metric, GiB, and where the time goes.

tqdm.auto draws it as text on a terminal and as a widget in a Jupyter kernel (ipywidgets)."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

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
