"""The rounds of a run, from a checkpoint to run.rounds or a stop: each round played by the
driver, its row completed by the callbacks and stored, a checkpoint saved every
run.checkpoint_every rounds; a lost worker is replaced and the rounds since the last
checkpoint are redone (at most runtime.max_restarts times), so the result is the same.
"""

from __future__ import annotations

import logging
from types import MappingProxyType
from typing import Any

from fslsage_ray.algorithms.base import Parts
from fslsage_ray.config import Config, config_to_dict
from fslsage_ray.errors import RunStopped
from fslsage_ray.outputs.callbacks import CallbackList
from fslsage_ray.outputs.metrics import MetricsTable
from fslsage_ray.run.driver import RoundDriver
from fslsage_ray.run.folder import RunFolder
from fslsage_ray.runtime.backend import Backend, WorkerLost

log = logging.getLogger("fslsage_ray")


def checkpoint_state(
    config: Config,
    task_fingerprint: str,
    metrics: MetricsTable,
    round_done: int,
    global_parts: Parts,
    backend: Backend | None = None,
) -> dict[str, Any]:
    """Everything needed to continue after round `round_done` (-1: before round 0); without
    a backend, the state fresh workers start in (no snapshot of theirs needed)."""
    state = {
        "config": config_to_dict(config),
        "round": round_done,
        "task": task_fingerprint,
        "global_parts": global_parts,
        "metrics": [dict(r) for r in metrics.rows],
    }
    if backend is not None:
        state["backend"] = backend.snapshot()
    return state


class Training:
    def __init__(
        self,
        driver: RoundDriver,
        folder: RunFolder,
        callbacks: CallbackList,
        task_fingerprint: str,
    ) -> None:
        self.driver = driver
        self.config = driver.config
        self.backend = driver.backend
        self.metrics = driver.metrics
        self.folder = folder
        self.callbacks = callbacks
        self.task_fingerprint = task_fingerprint
        self.restarts = 0

    def run_from(self, checkpoint: dict[str, Any]) -> None:
        t, global_parts = self._restore(checkpoint)
        while t < self.config.run.rounds:
            try:
                global_parts, checkpoint, done = self._round(t, global_parts, checkpoint)
            except WorkerLost as exc:  # during the round, a checkpoint or a resize
                t, global_parts = self._recover(exc, checkpoint)
                continue
            if done:
                break
            t += 1

    def _round(self, t: int, global_parts: Parts, checkpoint: dict[str, Any]):
        """A round, its row completed and stored, a checkpoint or a mirror sync, a pool
        resize; returns (global parts, last checkpoint, whether the run is done)."""
        run = self.config.run
        self.callbacks.on_round_start(t)
        row, global_parts = self.driver.play_round(t, global_parts)
        row.update(self.callbacks.round_columns(MappingProxyType(row)))  # the stored row
        self.folder.write_metrics(self.metrics)
        reason = self.callbacks.on_round_recorded(MappingProxyType(row))
        done = t + 1 >= run.rounds or reason is not None
        if run.checkpoint_every and ((t + 1) % run.checkpoint_every == 0 or done):
            checkpoint = self.state(t, global_parts, self.backend)
            self.folder.save_checkpoint(checkpoint)
        else:
            self.folder.sync()  # the metrics and log of this round
        if reason:
            log.info("stopping after round %d: %s", t, reason)
        if not done and self.backend.maybe_resize():
            log.info("worker pool resized: %s", self.backend.describe())
        return global_parts, checkpoint, done

    def state(self, round_done: int, global_parts: Parts, backend: Backend | None = None):
        state = checkpoint_state(
            self.config, self.task_fingerprint, self.metrics, round_done, global_parts, backend
        )
        if self.driver.probes is not None:  # cumulative counts (exposure) continue exactly
            state["probes"] = self.driver.probes.state()
        return state

    def _restore(self, state: dict[str, Any]) -> tuple[int, Parts]:
        if "backend" in state:  # else: the initial state, which fresh workers already hold
            self.backend.restore(state["backend"])
        self.metrics.restore(state["metrics"])
        if self.driver.probes is not None:
            self.driver.probes.restore(state.get("probes"))
        self.callbacks.on_restore(self.metrics.rows)
        return state["round"] + 1, state["global_parts"]

    def _recover(self, exc: WorkerLost, checkpoint: dict[str, Any]) -> tuple[int, Parts]:
        """Replace lost workers and redo everything since the last checkpoint."""
        location = self.folder.location
        if self.restarts >= self.config.runtime.max_restarts:
            self.folder.save_checkpoint(checkpoint)  # the last good state, for --resume
            raise RunStopped(
                f"workers lost {self.restarts + 1} times (last: {exc}); completed rounds are in "
                f"{location}; continue with `fslsage-ray run --resume {location}`"
            ) from exc
        self.restarts += 1
        log.warning(
            "worker lost (%s); restart %d/%d, redoing rounds after %d",
            exc,
            self.restarts,
            self.config.runtime.max_restarts,
            checkpoint["round"],
        )
        self.callbacks.on_phase("replacing lost workers")
        try:
            self.backend.restart()
        except Exception as again:
            self.folder.save_checkpoint(checkpoint)
            raise RunStopped(
                f"could not replace lost workers ({again}); continue later with "
                f"`fslsage-ray run --resume {location}`"
            ) from again
        log.info("workers replaced: %s", self.backend.describe())
        return self._restore(checkpoint)
