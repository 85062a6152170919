"""Keeping the best round's models (checkpoint_best.pt, outputs/best_checkpoint.py).

After each evaluated round, if the headline (test loss for language models, test accuracy
for images) beats every earlier round's, the round's evaluated global part and the server's
evaluation head are written beside checkpoint.pt. Ties keep the earlier round.

"Best so far" is read from the metrics rows, never kept apart, so a resume needs no state of
its own: the restored rows are the history. A best file from a round after the checkpoint a
run continues from (rounds lost to a crash or a lost worker) is removed when the run goes back
to that checkpoint; the redone rounds are the same rounds (exact resume) and write it again.
Reading the head is `Backend.inspect`, the read-only path the probes use: nothing a round
learns depends on whether the best is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fslsage_ray.algorithms.base import Parts
from fslsage_ray.algorithms.snapshot import to_cpu
from fslsage_ray.config import Config, config_to_dict
from fslsage_ray.models.frozen import own_state
from fslsage_ray.outputs.best_checkpoint import BEST_FILE, best_round, drop_best, save_best
from fslsage_ray.outputs.headline import HeadlineMetric, is_number
from fslsage_ray.runtime.backend import Backend
from fslsage_ray.tasks.base import Task

log = logging.getLogger("fslsage_ray")


def keeps_best(config: Config, task: Task) -> bool:
    """run.keep_best, or by default: on for tasks judged by test loss (language models, where
    `generate --checkpoint best` needs it and LoRA keeps it small), off for images (a full
    CNN per improving round, which nothing of the project reads)."""
    if config.run.keep_best is not None:
        return config.run.keep_best
    return task.headline == "test_loss"


def eval_head_state(host: Any, parts: Mapping[str, Any]) -> dict[str, Any]:
    """The server's evaluation head, without frozen weights, on the CPU (on the server host,
    through Backend.inspect; module-level so Ray sends its name)."""
    return to_cpu(own_state(host.server.eval_head()))


class BestKeeper:
    """Writes checkpoint_best.pt into `folder` when a round's headline is the best so far."""

    def __init__(
        self,
        config: Config,
        task: Task,
        task_fingerprint: str,
        folder: Path,
        remove: Callable[[str], None] | None = None,
    ) -> None:
        """`remove(name)`: deletes a stale file here and wherever the folder is mirrored (a
        run at a URI); by default only here."""
        self.config = config
        self.headline = HeadlineMetric(task.headline, task.goal)
        self.task_fingerprint = task_fingerprint
        self.folder = Path(folder)
        self.remove = remove or (lambda name: drop_best(self.folder))

    def restore(self, round_done: int) -> None:
        """The run continues after `round_done`: a best file from a later round is stale."""
        saved = best_round(self.folder)
        if saved is not None and saved > round_done:
            self.remove(BEST_FILE)
            log.info(
                "%s came from round %d, after the checkpoint's round %d: removed; the redone "
                "rounds write it again",
                BEST_FILE,
                saved,
                round_done,
            )

    def after_round(
        self,
        t: int,
        rows: Sequence[Mapping[str, Any]],
        backend: Backend,
        global_parts: Parts,
    ) -> bool:
        """Keep round t's models if its headline beats every earlier row's; whether it did."""
        column = self.headline.column
        row = next(r for r in reversed(rows) if r["round"] == t)
        value = row.get(column)
        if not is_number(value):
            return False
        before = self.headline.best(r.get(column) for r in rows if r["round"] < t)
        if before is not None and self.headline.best([value, before]) == before:
            return False  # not better (a tie keeps the earlier round)
        part = "full" if "full" in global_parts else "client"
        save_best(
            self.folder,
            {
                "round": t,
                "headline": {"column": column, "goal": self.headline.goal, "value": value},
                "config": config_to_dict(self.config),
                "task": self.task_fingerprint,
                "global_parts": {part: to_cpu(global_parts[part])},
                "eval_head": backend.inspect(eval_head_state, global_parts),
            },
        )
        return True
