"""The run.log line of every round: the task's metrics, bytes, and where the time went."""

from __future__ import annotations

import logging

from fslsage_ray.outputs.callbacks import Row, RunCallback, RunInfo

log = logging.getLogger("fslsage_ray")


class RoundLogLine(RunCallback):
    def __init__(self) -> None:
        self.metric_names: tuple[str, ...] = ()

    def on_run_start(self, run: RunInfo) -> None:
        self.metric_names = tuple(run.task.metric_names)

    def on_round_recorded(self, row: Row) -> None:
        test = " ".join(f"{k.removeprefix('test_')} {row[k]:.4f}" for k in self.metric_names)
        log.info(
            "round %d %s | GiB %.4f | wall %.1fs (align %.1fs) | %.0f samples/s, "
            "server busy %.0f%%",
            row["round"],
            test,
            row["comm_gib_cum"],
            row["wall_s"],
            row["align_s"],
            row["samples_per_s"],
            100 * row["server_busy_frac"],
        )
