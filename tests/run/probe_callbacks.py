"""Callbacks a user would write in their own package, named in run.callbacks by the tests."""

from __future__ import annotations

from fslsage_ray.callbacks import RunCallback


class AccuracyGrade(RunCallback):
    """A metric column of one's own: a grade from the round's test accuracy."""

    def round_columns(self, row):
        return {"grade": "pass" if row["test_acc"] >= 0.5 else "fail"}


class StopAfterTwoRounds(RunCallback):
    """A stop rule of one's own."""

    def on_round_recorded(self, row):
        return "two rounds are enough" if row["round"] >= 1 else None


def not_a_callback():
    return object()
