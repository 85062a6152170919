"""The rounds of a run, from a checkpoint to run.rounds or a stop: each round played by the
driver, its row completed by the callbacks and stored, a checkpoint saved every
run.checkpoint_every rounds; a lost worker is replaced and the rounds since the last
checkpoint are redone (at most runtime.max_restarts times), so the result is the same.

A worker out of memory is not simply replaced (it would run out again): the workers restart
with the next smaller setting (runtime/oom.py: the in-flight window, then the state kept in
memory), one run.log line says what changed, and the rounds since the last checkpoint are
redone, with the same result (those settings never change a number). Out of memory at the
smallest setting, or in this process (the in-process backend, or FedAvg's driver-side
server), stops the run with a resumable checkpoint.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import weakref
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fslsage_ray.algorithms.base import Parts
from fslsage_ray.config import Config, config_to_dict
from fslsage_ray.errors import RunStopped
from fslsage_ray.outputs.callbacks import CallbackList
from fslsage_ray.outputs.metrics import MetricsTable
from fslsage_ray.run.best import BestKeeper
from fslsage_ray.run.driver import RoundDriver
from fslsage_ray.run.folder import RunFolder
from fslsage_ray.runtime.backend import Backend, WorkerLost
from fslsage_ray.runtime.oom import (
    OutOfMemory,
    first_line,
    is_out_of_memory,
    smaller_setting,
    smallest_text,
)
from fslsage_ray.runtime.state_file import StatesReader, StatesWriter, states_file_name

log = logging.getLogger("fslsage_ray")


def checkpoint_state(
    config: Config,
    task_fingerprint: str,
    metrics: MetricsTable,
    round_done: int,
    global_parts: Parts,
) -> dict[str, Any]:
    """What a checkpoint after round `round_done` (-1: before round 0) holds besides the
    workers' state (Training.state adds that); alone, the state fresh workers start in."""
    return {
        "config": config_to_dict(config),
        "round": round_done,
        "task": task_fingerprint,
        "global_parts": global_parts,
        "metrics": [dict(r) for r in metrics.rows],
    }


class Training:
    def __init__(
        self,
        driver: RoundDriver,
        folder: RunFolder,
        callbacks: CallbackList,
        task_fingerprint: str,
        best: BestKeeper | None = None,
    ) -> None:
        """`best`: keeps checkpoint_best.pt (None: run.keep_best off, or no run folder)."""
        self.driver = driver
        self.best = best
        self.config = driver.config
        self.backend = driver.backend
        self.metrics = driver.metrics
        self.folder = folder
        self.callbacks = callbacks
        self.task_fingerprint = task_fingerprint
        self.restarts = 0  # lost workers replaced (bounded by runtime.max_restarts)
        self.runtime = self.config.runtime  # the workers' settings now (smaller after an OOM)
        self.memory_changes: list[str] = []  # each `runtime.key old -> new` made after an OOM
        self._scratch: Path | None = None  # states files when the run has no folder

    def run_from(self, checkpoint: dict[str, Any]) -> None:
        t, global_parts = self._restore(checkpoint)
        while t < self.config.run.rounds:
            try:
                global_parts, checkpoint, done = self._round(t, global_parts, checkpoint)
            except OutOfMemory as exc:  # a worker's: restart the workers with less
                t, global_parts = self._recover_memory(exc, checkpoint)
                continue
            except WorkerLost as exc:  # during the round, a checkpoint or a resize
                t, global_parts = self._recover(exc, checkpoint)
                continue
            except Exception as exc:
                if is_out_of_memory(exc):  # this process's own: nothing to restart
                    self._stop_out_of_memory_here(exc, checkpoint)
                raise
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
        if self.best is not None:  # before the checkpoint and the mirror's sync
            self.best.after_round(t, self.metrics.rows, self.backend, global_parts)
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
        """A checkpoint; with `backend`, its workers' state too: the participants' states go
        to a states file beside it, a chunk at a time, and the checkpoint names that file."""
        state = checkpoint_state(
            self.config, self.task_fingerprint, self.metrics, round_done, global_parts
        )
        if backend is not None:
            state["backend"] = self._save_workers(backend, round_done)
        if self.driver.probes is not None:  # cumulative counts (exposure) continue exactly
            state["probes"] = self.driver.probes.state()
        return state

    def _save_workers(self, backend: Backend, round_done: int) -> dict[str, Any]:
        folder = self._states_folder()
        writer = StatesWriter(folder / states_file_name(round_done))
        try:
            saved = backend.save_state(writer)
        except BaseException:
            writer.abandon()
            raise
        saved["states"] = writer.finish()
        if folder == self._scratch:  # no checkpoint on disk names the earlier ones
            for entry in folder.iterdir():
                if entry.name != saved["states"]["file"]:
                    entry.unlink(missing_ok=True)
        return saved

    def _states_folder(self) -> Path:
        """The run folder; without one (write_outputs=False), a scratch folder kept for this
        run's recoveries and removed with it."""
        if self.folder.path is not None:
            return self.folder.path
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="fslsage-checkpoint-"))
            weakref.finalize(self, shutil.rmtree, self._scratch, True)
        return self._scratch

    def _states_reader(self, ref: dict[str, Any]) -> StatesReader:
        for folder in (self._scratch, self.folder.path, self.folder.local):
            if folder is not None and (Path(folder) / ref["file"]).is_file():
                return StatesReader(Path(folder), ref)
        return StatesReader(self.folder.local, ref)  # says which file is missing

    def _restore(self, state: dict[str, Any]) -> tuple[int, Parts]:
        saved = state.get("backend")  # None: the initial state, which fresh workers hold
        if saved is not None and "states" in saved:
            self.backend.load_state(saved, self._states_reader(saved["states"]))
        elif saved is not None:  # format 2: every state inline
            self.backend.restore(saved)
        self.metrics.restore(state["metrics"])
        if self.best is not None:
            self.best.restore(state["round"])
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

    def _recover_memory(self, exc: OutOfMemory, checkpoint: dict[str, Any]) -> tuple[int, Parts]:
        """Restart every worker with the next smaller setting and redo the rounds since the
        last checkpoint; stop, resumable, when no smaller setting is left. These restarts do
        not count against runtime.max_restarts: the settings' ladder is what bounds them."""
        location = self.folder.location
        shrink = smaller_setting(self.runtime, exc.role)
        if shrink is None:
            self.folder.save_checkpoint(checkpoint)  # the last good state, for --resume
            raise RunStopped(
                f"{exc}, again at the smallest setting ({smallest_text(self.runtime)}); "
                f"completed rounds are in {location}; continue with "
                f"`fslsage-ray run --resume {location}` where more memory is free"
            ) from exc
        log.warning(
            "%s; restarting the workers with %s; redoing rounds after %d",
            exc,
            shrink.change,
            checkpoint["round"],
        )
        self.callbacks.on_phase("restarting workers with less memory")
        try:
            self.backend.restart(shrink.runtime)
        except Exception as again:
            self.folder.save_checkpoint(checkpoint)
            raise RunStopped(
                f"could not restart the workers after running out of memory ({again}); "
                f"continue later with `fslsage-ray run --resume {location}`"
            ) from again
        self.runtime = shrink.runtime
        self.memory_changes.append(shrink.change)
        log.info("workers replaced: %s", self.backend.describe())
        return self._restore(checkpoint)

    def _stop_out_of_memory_here(self, exc: BaseException, checkpoint: dict[str, Any]) -> None:
        """Out of memory in this process (in-process backend, or FedAvg's server on the
        driver): no process to restart with less, and the hosts' state may be half-updated;
        keep the last checkpoint and stop with one line."""
        location = self.folder.location
        self.folder.save_checkpoint(checkpoint)
        raise RunStopped(
            f"out of memory in the driver process ({first_line(exc)}), which cannot be "
            f"restarted with less; completed rounds are in {location}; continue with "
            f"`fslsage-ray run --resume {location}` where more memory is free (or with "
            "runtime.client_state_budget_gb=0 runtime.server_state_budget_gb=0, which keep "
            "idle clients' state on disk; results are the same)"
        ) from exc
