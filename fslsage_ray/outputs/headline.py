"""The headline metric: the one number a run's task is judged by, and which way is better.

Image classification is judged by test accuracy (higher is better), language modelling by
test loss (lower is better). The metrics file carries the headline in its Parquet schema
metadata, so run folders can be read, summarized and plotted without torch or the task code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

HEADLINE_KEY = b"fslsage_ray.headline"
GOAL_KEY = b"fslsage_ray.goal"
GOALS = ("max", "min")

_SHORT = {"test_acc": "acc", "test_loss": "loss", "test_ppl": "ppl"}
_NOUN = {"test_acc": "test accuracy", "test_loss": "test loss", "test_ppl": "test perplexity"}


def is_number(value: Any) -> bool:
    """A real measurement: not None, not NaN (rounds without an evaluation hold NaN)."""
    return isinstance(value, (int, float)) and not math.isnan(value)


def short_name(column: str) -> str:
    """A metrics column's name for tight spaces: "acc", "loss", "ppl"."""
    return _SHORT.get(column, column.removeprefix("test_"))


def noun(column: str) -> str:
    """A metrics column's name for sentences: "test accuracy", "test loss"."""
    return _NOUN.get(column, column.replace("_", " "))


@dataclass(frozen=True)
class HeadlineMetric:
    """A metrics column and whether its best value is its highest ("max") or lowest ("min")."""

    column: str = "test_acc"
    goal: str = "max"

    def __post_init__(self) -> None:
        if self.goal not in GOALS:
            raise ValueError(f"headline goal must be one of {GOALS}, got {self.goal!r}")

    @property
    def short(self) -> str:
        return short_name(self.column)

    @property
    def noun(self) -> str:
        return noun(self.column)

    @property
    def is_accuracy(self) -> bool:
        """Accuracy is a fraction shown as a percentage; everything else as a plain number."""
        return self.column == "test_acc"

    def reaches(self, value: Any, target: float) -> bool:
        """Whether value meets the target: at or above it for "max", at or below for "min"."""
        if not is_number(value):
            return False
        return value >= target if self.goal == "max" else value <= target

    def best(self, values: Iterable[Any]) -> float | None:
        """The best measured value (NaN and None skipped); None if there is none."""
        numbers = [float(v) for v in values if is_number(v)]
        if not numbers:
            return None
        return max(numbers) if self.goal == "max" else min(numbers)

    def metadata(self) -> dict[bytes, bytes]:
        """Parquet schema metadata that names this headline."""
        return {HEADLINE_KEY: self.column.encode(), GOAL_KEY: self.goal.encode()}


ACCURACY = HeadlineMetric("test_acc", "max")
LOSS = HeadlineMetric("test_loss", "min")


def headline_from_metadata(
    metadata: Mapping[bytes, bytes] | None, columns: Iterable[str]
) -> HeadlineMetric:
    """The headline a metrics table declares; tables written before it was declared are
    judged by accuracy when they have it, else by test loss.
    """
    metadata = metadata or {}
    if HEADLINE_KEY in metadata:
        column = metadata[HEADLINE_KEY].decode()
        goal = metadata.get(GOAL_KEY, b"max" if column == "test_acc" else b"min").decode()
        return HeadlineMetric(column, goal)
    return ACCURACY if "test_acc" in set(columns) else LOSS
