"""One progress line per run: round, accuracy, GiB, and where the time goes."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm


class Progress:
    def __init__(self, total_rounds: int, description: str, enabled: bool = True) -> None:
        self.bar = tqdm(total=total_rounds, desc=description, unit="round", disable=not enabled)

    def phase(self, text: str) -> None:
        self.bar.set_description_str(text, refresh=True)

    def update(self, row: dict[str, Any]) -> None:
        self.bar.set_postfix(
            acc=f"{row['test_acc']:.3f}",
            loss=f"{row['test_loss']:.3f}",
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
        self.bar.close()
