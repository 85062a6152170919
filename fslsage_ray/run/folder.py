"""The run folder: where a run writes its config, metrics, log and checkpoints, and what a
resume checks before it continues there.

A URI (s3://..., gs://...) is worked on in a local staging folder that is mirrored there
after every round, so the rest of the run only ever sees a local path.
"""

from __future__ import annotations

import logging
import shlex
import shutil
from pathlib import Path
from typing import Any

from fslsage_ray.config import Config, ConfigError
from fslsage_ray.notebook import in_kernel
from fslsage_ray.outputs.checkpoint import (
    CHECKPOINT_FILE,
    check_compatible,
    load_checkpoint,
    save_checkpoint,
    states_file_of,
)
from fslsage_ray.outputs.metrics import MetricsTable
from fslsage_ray.outputs.provenance import PROVENANCE_FILE, changed_data, data_hashes
from fslsage_ray.outputs.run_dir import (
    CONFIG_FILE,
    LOG_FILE,
    METRICS_FILE,
    attach_log,
    check_run_dir,
    default_run_dir,
    detach_log,
    prepare_run_dir,
)
from fslsage_ray.outputs.storage import Mirror, Where, delete, is_uri, join, write_bytes
from fslsage_ray.runtime.state_file import is_states_file
from fslsage_ray.tasks.base import Task


class RunFolder:
    """One run's folder, opened for a new run (refused if it holds another) or a resume
    (its checkpoint read and checked against the config). Nothing is written until
    `create`; with write_outputs=False nothing is written at all."""

    def __init__(
        self,
        config: Config,
        where: Where | None,
        overwrite: bool = False,
        write_outputs: bool = True,
        resume: bool = False,
    ) -> None:
        where = where if where is not None else default_run_dir(config)
        where = where if is_uri(where) else Path(where)
        self.config = config
        self.location = str(where)  # the folder or URI named, as messages show it
        self.overwrite = overwrite
        self.write_outputs = write_outputs
        self.mirror = Mirror(str(where)) if is_uri(where) and (resume or write_outputs) else None
        self.local = self.mirror.local if self.mirror else Path(where)
        self.path: Path | None = None  # set by `create`: where this run writes
        self.resumed: dict[str, Any] | None = None  # the checkpoint a resume continues from
        self.saved_round: int | None = None  # the round of the checkpoint on disk
        self.log_handler: logging.Handler | None = None
        self._before: set[str] = set()  # what the folder held when `create` made it ours
        self._made: Path | None = None  # the outermost folder `create` had to make
        self._provenance: bytes | None = None  # an earlier run's provenance.json, as it was
        if resume:
            if self.mirror:
                self.mirror.fetch()
            try:
                self.resumed = load_checkpoint(self.local)
            except ConfigError as exc:
                raise ConfigError(str(exc).replace(str(self.local), self.location)) from None
            check_compatible(self.resumed, config)
            self.saved_round = self.resumed["round"]
        elif write_outputs:
            check_run_dir(where, overwrite)
            if self.mirror:  # as a local --overwrite does: earlier provenance is kept
                for name in (CONFIG_FILE, METRICS_FILE, LOG_FILE):
                    delete(join(where, name))
                self.mirror.fetch([PROVENANCE_FILE])

    # --- resume checks ----------------------------------------------------------------------
    def check_resumable_with(self, task: Task, files: tuple[str, ...], allow_data_change: bool):
        """A resume continues the same run: the same data files (unless allowed) and task."""
        if self.resumed is None:
            return
        changed = changed_data(self.local, data_hashes(files))
        if changed and not allow_data_change:
            raise ConfigError(
                f"data files differ from those {self.location} was made with ({changed[0]}"
                f"{f' and {len(changed) - 1} more' if len(changed) > 1 else ''}); pass "
                "--allow-data-change to continue anyway"
            )
        saved = self.resumed.get("task", "")
        if saved != task.fingerprint():
            raise ConfigError(
                f"the checkpoint was made for another task ({saved or 'none recorded'}); "
                f"the data now give {task.fingerprint() or 'none'}"
            )

    # --- writing ----------------------------------------------------------------------------
    def create(self, task: Task) -> Path | None:
        """The folder made (a new run: with its resolved config) and the task's files."""
        if not self.write_outputs:
            return None
        if self.resumed is not None:
            self.path = self.local
        else:
            self._remember_before()
            self.path = prepare_run_dir(self.local, self.config, self.overwrite)
        task.save_artifacts(self.path)
        return self.path

    def _remember_before(self) -> None:
        """What `discard` leaves: the entries already there (an --overwrite's earlier run,
        or for a URI, the files fetched from it) and their provenance.json's bytes."""
        if self.local.is_dir():
            self._before = {entry.name for entry in self.local.iterdir()}
        elif not self.mirror:
            self._made = self.local
            while not self._made.parent.exists():
                self._made = self._made.parent
        if self.mirror:
            self._before |= set(self.mirror.sent)
        provenance = self.local / PROVENANCE_FILE
        self._provenance = provenance.read_bytes() if provenance.is_file() else None

    def discard(self) -> None:
        """Undo `create` for a run refused at start-up, before any round: what this run
        wrote goes (its config, log, task files, provenance entry), what was there before
        stays (as it is after --overwrite dropped the earlier run's config, metrics and log),
        and a folder this run made goes too. A resume's folder is never touched."""
        if self.path is None or self.resumed is not None:
            return
        self.detach_log()
        written = {entry.name for entry in self.path.iterdir()} - self._before
        written |= {CONFIG_FILE, METRICS_FILE, LOG_FILE}  # ours even when --overwrite ran
        sent = set(self.mirror.sent) if self.mirror else set()
        for name in written:
            entry = self.path / name
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
        for rel in (sent - self._before) | (sent & {CONFIG_FILE, METRICS_FILE, LOG_FILE}):
            delete(join(self.location, *rel.split("/")))
        if self._provenance is not None:
            (self.path / PROVENANCE_FILE).write_bytes(self._provenance)
            if self.mirror:
                write_bytes(join(self.location, PROVENANCE_FILE), self._provenance)
        folder = self.path
        while self._made is not None and not any(folder.iterdir()):  # the folders it made
            folder.rmdir()
            if folder == self._made:
                break
            folder = folder.parent
        self.path = None
        if self.mirror:  # nothing left to upload: drop the staging folder
            shutil.rmtree(self.mirror.local, ignore_errors=True)
            self.mirror = None

    def attach_log(self) -> None:
        if self.path:
            self.log_handler = attach_log(self.path)

    def detach_log(self) -> None:
        if self.log_handler:
            detach_log(self.log_handler)
            self.log_handler = None

    def write_metrics(self, metrics: MetricsTable) -> None:
        if self.path:
            metrics.write(self.path / METRICS_FILE)

    def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Saved atomically and mirrored; a resume or a stop line names its round. The states
        file it names was written before (the run's `state`); once the checkpoint is in place
        (and uploaded), earlier states files go."""
        if self.path:
            save_checkpoint(self.path, checkpoint)
            self.saved_round = checkpoint["round"]
            self.sync()
            keep = states_file_of(checkpoint)
            for entry in self.path.iterdir():
                if is_states_file(entry.name) and entry.name != keep:
                    self.remove(entry.name)

    def remove(self, name: str) -> None:
        """Delete a file the run no longer needs, here and at the run's URI."""
        if self.path:
            if self.mirror:
                self.mirror.remove(name)
            (self.path / name).unlink(missing_ok=True)

    def sync(self) -> None:
        """Copy what changed to the run's URI (nothing to do for a local folder); the
        checkpoint last, after the states file it names."""
        if self.mirror:
            self.mirror.sync(last=(CHECKPOINT_FILE,))

    def close(self) -> None:
        if self.mirror:
            self.mirror.close()

    # --- messages ---------------------------------------------------------------------------
    def stopped_line(self, signal_name: str, rounds_done: int) -> str:
        """One line: where the run is, what a resume keeps and redoes, and the command."""
        head = f"stopped by {signal_name} in round {rounds_done}"
        if self.path is None:
            return f"{head}; nothing was written (write_outputs=False), so nothing to resume"
        kernel = in_kernel()  # a notebook user continues in Python, not on the command line
        if self.saved_round is None:
            return (
                f"{head}; {self.location} has no checkpoint yet (run.checkpoint_every="
                f"{self.config.run.checkpoint_every}), so it cannot be resumed; start it again "
                f"with {'overwrite=True' if kernel else '--overwrite'}"
            )
        redo = rounds_done - (self.saved_round + 1)
        command = (
            f"Simulation.resume({self.location!r}).run()"
            if kernel
            else f"fslsage-ray run --resume {shlex.quote(self.location)}"
        )
        return (
            f"{head}; run folder {self.location}; last resumable round {self.saved_round}, "
            f"{redo} completed round{'s' if redo != 1 else ''} to redo; continue with: {command}"
        )
