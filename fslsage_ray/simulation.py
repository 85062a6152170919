"""The coordinator: runs rounds of an algorithm on a backend and records what happened.

    table = Simulation(load_config("configs/digits/fsl_sage.yaml")).run()

Everything that can be checked without training (config, data, partition, model shapes,
resources) is checked before the first round starts.
"""

from __future__ import annotations

import logging
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from fslsage_ray.algorithms.aggregate import sample_weights, weighted_average
from fslsage_ray.algorithms.base import PART_KINDS, Algorithm, ModelSizes, Parts
from fslsage_ray.algorithms.jobs import JobReport
from fslsage_ray.algorithms.ledger import Ledger, state_bytes
from fslsage_ray.algorithms.participation import participants
from fslsage_ray.algorithms.phases import LocalPhase, ServerJobPhase
from fslsage_ray.algorithms.registry import get_algorithm
from fslsage_ray.config import Config, ConfigError, config_to_dict, load_config
from fslsage_ray.errors import RunInterrupted, RunStopped
from fslsage_ray.experiment import (
    WorldSpec,
    build_template,
    check_models,
    initial_aux,
    load_data,
    model_sizes,
    partition,
)
from fslsage_ray.notebook import in_kernel
from fslsage_ray.outputs.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from fslsage_ray.outputs.metrics import MetricsTable
from fslsage_ray.outputs.progress import Progress
from fslsage_ray.outputs.provenance import (
    PROVENANCE_FILE,
    append_provenance,
    changed_data,
    data_hashes,
    provenance_entry,
)
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
from fslsage_ray.outputs.storage import Mirror, Where, delete, download, is_uri, join
from fslsage_ray.outputs.trackers import check_tracker, make_tracker
from fslsage_ray.rounds import RoundRecord, stop_reason
from fslsage_ray.runtime.allocator import torch_threads
from fslsage_ray.runtime.backend import Backend, ServerStats, WorkerLost
from fslsage_ray.runtime.client_host import ClientResult
from fslsage_ray.stopping import Stopper, stop_on_signals
from fslsage_ray.system.devices import available
from fslsage_ray.system.events import ROUND, Message, sorted_messages
from fslsage_ray.system.flops import count_step_flops
from fslsage_ray.system.timing import SystemModel, sim_columns, uploaded_samples
from fslsage_ray.tasks.base import Arrays, TaskData
from fslsage_ray.tasks.compute import Compute

log = logging.getLogger("fslsage_ray")


def make_backend(config: Config) -> Backend:
    if config.runtime.backend == "inprocess":
        from fslsage_ray.runtime.device import choose_device
        from fslsage_ray.runtime.inprocess import InProcessBackend

        return InProcessBackend(choose_device(config.runtime.device))
    from fslsage_ray.algorithms.registry import get_algorithm
    from fslsage_ray.runtime.ray_backend import RayBackend

    return RayBackend(config.runtime, uses_server=get_algorithm(config).uses_server)


@dataclass
class Prepared:
    """The driver's one-time work: data read and split, shapes known."""

    world: WorldSpec
    train: Arrays
    test: Arrays
    parts: list[np.ndarray]
    sizes: ModelSizes
    initial_parts: Parts
    files: tuple[str, ...] = ()  # data files read (their hashes go into provenance.json)
    load_s: float = 0.0  # seconds spent reading (and decoding) the data
    models_s: float = 0.0  # seconds spent building the models

    @property
    def client_sizes(self) -> list[int]:
        return [len(p) for p in self.parts]


def sizes_text(sizes: list[int], listed: int = 20) -> str:
    """Every client's sample count up to `listed` clients; beyond, a summary (a list of
    10,000 counts made a 30 kB log line)."""
    if len(sizes) <= listed:
        return str(sizes)
    ordered = sorted(sizes)
    median = ordered[len(ordered) // 2]
    return f"min {ordered[0]}, median {median}, max {ordered[-1]}, total {sum(sizes)}"


@dataclass
class DataRead:
    """The data read and split: everything a bad data folder or partition is refused at."""

    data: TaskData
    parts: list[np.ndarray]
    load_s: float  # seconds spent reading (and decoding)


def read_data(config: Config) -> DataRead:
    started = time.perf_counter()
    data = load_data(config)
    load_s = time.perf_counter() - started
    return DataRead(data, partition(config, data.train_keys), load_s)


def build_models(config: Config, read: DataRead) -> Prepared:
    """The model template, its sizes and the initial global parts."""
    started = time.perf_counter()
    world = WorldSpec(config, read.data.task)
    template = build_template(world)
    algorithm = get_algorithm(config)
    initial = algorithm.initial_parts(template, initial_aux(template, config.run.seed))
    return Prepared(
        world,
        read.data.train,
        read.data.test,
        read.parts,
        model_sizes(world, template),
        initial,
        read.data.files,
        read.load_s,
        time.perf_counter() - started,
    )


def prepare(config: Config) -> Prepared:
    return build_models(config, read_data(config))


class Simulation:
    def __init__(
        self,
        config: Config,
        run_dir: Where | None = None,
        overwrite: bool = False,
        progress: bool = True,
        write_outputs: bool = True,
        resume: bool = False,
        allow_data_change: bool = False,
    ) -> None:
        config = resolve_at_start(config)
        self.config = config
        where = run_dir if run_dir is not None else default_run_dir(config)
        where = where if is_uri(where) else Path(where)
        self.location = str(where)  # the folder or URI named, as messages show it
        # A URI: the run works in a local staging folder that is mirrored there every round.
        self._mirror = Mirror(str(where)) if is_uri(where) and (resume or write_outputs) else None
        target = self._mirror.local if self._mirror else Path(where)
        self._resume_from: dict[str, Any] | None = None
        self._saved_round: int | None = None  # the round of the checkpoint on disk
        if resume:
            if self._mirror:
                self._mirror.fetch()
            try:
                self._resume_from = load_checkpoint(target)
            except ConfigError as exc:
                raise ConfigError(str(exc).replace(str(target), self.location)) from None
            check_compatible(self._resume_from, config)
            self._saved_round = self._resume_from["round"]
        elif write_outputs:
            check_run_dir(where, overwrite)
            if self._mirror:  # as a local --overwrite does: earlier provenance is kept
                for name in (CONFIG_FILE, METRICS_FILE, LOG_FILE):
                    delete(join(where, name))
                self._mirror.fetch([PROVENANCE_FILE])
        check_tracker(config.run)  # a missing tracker library is refused before any work
        read = read_data(config)  # bad data or partition fails here, before any Ray work
        task = read.data.task
        check_models(WorldSpec(config, task))  # and a model the task cannot use
        if resume:
            changed = changed_data(target, data_hashes(read.data.files))
            if changed and not allow_data_change:
                raise ConfigError(
                    f"data files differ from those {self.location} was made with ({changed[0]}"
                    f"{f' and {len(changed) - 1} more' if len(changed) > 1 else ''}); pass "
                    "--allow-data-change to continue anyway"
                )
        if self._resume_from is not None:
            saved = self._resume_from.get("task", "")
            if saved != task.fingerprint():
                raise ConfigError(
                    f"the checkpoint was made for another task ({saved or 'none recorded'}); "
                    f"the data now give {task.fingerprint() or 'none'}"
                )
        self.tracker = make_tracker(
            config.run,
            target if write_outputs else None,
            (*task.metric_names, "train_loss"),  # also logged against GiB (trackers.py)
        )
        self.backend = make_backend(config)
        self.run_dir: Path | None = None
        # The models are built in a thread while Ray starts: Ray's start waits on the
        # processes it launches, and the building (mostly imports) fills that time.
        with ThreadPoolExecutor(1, thread_name_prefix="fslsage-models") as pool:
            building = pool.submit(build_models, config, read)
            started = time.perf_counter()
            try:  # resources the cluster can never provide: an error now, not a pending actor
                self.backend.validate(len(read.parts))  # Ray: reserves the actors' share
                cluster_s = time.perf_counter() - started
                self.prepared = building.result()
                # Devices (a bad trace fails here) and FLOPs per sample; None: no system model.
                self.system = system_model(config, get_algorithm(config), self.prepared)
                self.provenance: dict[str, Any] = {}
                if write_outputs or self.tracker:
                    self.provenance = provenance_entry(
                        config.run.seed,
                        self.prepared.files,
                        self.backend.describe(),
                        self.backend.cluster_nodes(),
                    )
                if write_outputs:
                    self.run_dir = target if resume else prepare_run_dir(target, config, overwrite)
                    task.save_artifacts(self.run_dir)
                    append_provenance(self.run_dir, self.provenance)
                    self._sync()
            except BaseException:  # release the reservation: a refused run holds nothing
                self.backend.close()
                raise
        # Seconds each start-up phase took, logged when the run starts (benchmarks/startup.py);
        # the models were built while the cluster started.
        self.startup = {
            "data": self.prepared.load_s,
            "models": self.prepared.models_s,
            "cluster": cluster_s,
        }
        self.show_progress = progress
        self.algorithm: Algorithm = get_algorithm(config)
        self.metrics = MetricsTable(headline=task.headline, goal=task.goal)
        self.restarts = 0

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        overrides: Sequence[str] = (),
        progress: bool = True,
        allow_data_change: bool = False,
    ) -> Simulation:
        """Continue a run from its last checkpoint, exactly as if it had not stopped; the
        data files must hash as they did (unless `allow_data_change`)."""
        if is_uri(run_dir):  # only the config now; the rest comes in __init__
            with tempfile.TemporaryDirectory(prefix="fslsage-ray-") as scratch:
                download(str(run_dir), Path(scratch), [CONFIG_FILE])
                if not (Path(scratch) / CONFIG_FILE).is_file():
                    raise ConfigError(f"{run_dir} is not a run folder: no {CONFIG_FILE} in it")
                config = load_config(Path(scratch) / CONFIG_FILE, overrides, saved=True)
        else:
            config = load_config(Path(run_dir) / CONFIG_FILE, overrides, saved=True)
        return cls(
            config, run_dir, progress=progress, resume=True, allow_data_change=allow_data_change
        )

    def run(self) -> pa.Table:
        """Train for run.rounds rounds (or until run.max_gib); returns the metrics table.

        SIGTERM or SIGINT meanwhile abandons the round, prints one line (what is kept, how
        to resume) and raises RunInterrupted once the workers are stopped."""
        with stop_on_signals() as stopper:
            return self._run(stopper)

    def _run(self, stopper: Stopper) -> pa.Table:
        handler = attach_log(self.run_dir) if self.run_dir else None
        backend = self.backend
        bar = Progress(
            self.config.run.rounds,
            self.config.run.name,
            self.show_progress,
            headline=self.prepared.world.task.headline,
        )
        ok = False
        try:
            if self.tracker:
                name = self.run_dir.name if self.run_dir else self.config.run.name
                self.tracker.start(name, config_to_dict(self.config), self.provenance)
            p = self.prepared
            bar.phase("starting workers")
            started = time.perf_counter()
            backend.start(p.world, p.train, p.test, p.parts)
            self.startup["workers"] = time.perf_counter() - started
            log.info("backend: %s", backend.describe())
            log.info("start-up: %s", ", ".join(f"{k} {v:.1f}s" for k, v in self.startup.items()))
            sizes = sizes_text(p.client_sizes)
            log.info("clients: %d, samples per client: %s", len(p.parts), sizes)
            model = self.config.model
            log.info("compute: %s", Compute(model.precision, model.channels_last).describe())
            if self._resume_from is not None:
                checkpoint = self._resume_from
                log.info("resuming after round %d", checkpoint["round"])
            else:
                # Fresh workers start in this state, so it needs no snapshot of theirs.
                checkpoint = self._state(None, -1, p.initial_parts)
            self._loop(backend, bar, checkpoint)
            ok = True
        except KeyboardInterrupt:  # our signal handler's Stop, or Ray's rendering of it
            bar.close()
            line = self._stopped_line(stopper.name)
            print(line, file=sys.stderr, flush=True)  # before the workers' slower shutdown
            log.warning("%s", line)
            raise RunInterrupted(line, stopper.exit_code) from None
        finally:
            bar.close()
            backend.close()
            if handler:
                detach_log(handler)
            if self.tracker:  # closed also when the run fails, marked as failed
                files = (CONFIG_FILE, METRICS_FILE, PROVENANCE_FILE, LOG_FILE)
                artifacts = [self.run_dir / f for f in files] if self.run_dir else []
                self.tracker.close(ok, self.metrics.rows, artifacts)
            if self._mirror:
                self._mirror.close()
        return self.metrics.to_arrow()

    def _stopped_line(self, signal_name: str) -> str:
        """One line: where the run is, what a resume keeps and redoes, and the command."""
        done = len(self.metrics.rows)
        head = f"stopped by {signal_name} in round {done}"
        if self.run_dir is None:
            return f"{head}; nothing was written (write_outputs=False), so nothing to resume"
        kernel = in_kernel()  # a notebook user continues in Python, not on the command line
        if self._saved_round is None:
            return (
                f"{head}; {self.location} has no checkpoint yet (run.checkpoint_every="
                f"{self.config.run.checkpoint_every}), so it cannot be resumed; start it again "
                f"with {'overwrite=True' if kernel else '--overwrite'}"
            )
        redo = done - (self._saved_round + 1)
        command = (
            f"Simulation.resume({self.location!r}).run()"
            if kernel
            else f"fslsage-ray run --resume {shlex.quote(self.location)}"
        )
        return (
            f"{head}; run folder {self.location}; last resumable round {self._saved_round}, "
            f"{redo} completed round{'s' if redo != 1 else ''} to redo; continue with: {command}"
        )

    def _sync(self) -> None:
        """Copy what changed to the run's URI (nothing to do for a local folder)."""
        if self._mirror:
            self._mirror.sync()

    def _save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_dir:
            save_checkpoint(self.run_dir, checkpoint)
            self._saved_round = checkpoint["round"]
            self._sync()

    # --- state ----------------------------------------------------------------------------
    def _state(
        self, backend: Backend | None, round_done: int, global_parts: Parts
    ) -> dict[str, Any]:
        """Everything needed to continue after round `round_done` (-1: before round 0)."""
        state = {
            "config": config_to_dict(self.config),
            "round": round_done,
            "task": self.prepared.world.task.fingerprint(),
            "global_parts": global_parts,
            "metrics": [dict(r) for r in self.metrics.rows],
        }
        if backend is not None:
            state["backend"] = backend.snapshot()
        return state

    def _restore(self, backend: Backend, state: dict[str, Any], bar: Progress) -> tuple[int, Parts]:
        if "backend" in state:  # else: the initial state, which fresh workers already hold
            backend.restore(state["backend"])
        self.metrics.restore(state["metrics"])
        bar.reset(len(self.metrics.rows))
        return state["round"] + 1, state["global_parts"]

    def _recover(self, backend: Backend, exc: WorkerLost, checkpoint, bar: Progress):
        """Replace lost workers and redo everything since the last checkpoint."""
        if self.restarts >= self.config.runtime.max_restarts:
            self._save_checkpoint(checkpoint)  # the last good state, for --resume
            raise RunStopped(
                f"workers lost {self.restarts + 1} times (last: {exc}); completed rounds are in "
                f"{self.location}; continue with `fslsage-ray run --resume {self.location}`"
            ) from exc
        self.restarts += 1
        log.warning(
            "worker lost (%s); restart %d/%d, redoing rounds after %d",
            exc,
            self.restarts,
            self.config.runtime.max_restarts,
            checkpoint["round"],
        )
        bar.phase("replacing lost workers")
        try:
            backend.restart()
        except Exception as again:
            self._save_checkpoint(checkpoint)
            raise RunStopped(
                f"could not replace lost workers ({again}); continue later with "
                f"`fslsage-ray run --resume {self.location}`"
            ) from again
        log.info("workers replaced: %s", backend.describe())
        return self._restore(backend, checkpoint, bar)

    # --- rounds ---------------------------------------------------------------------------
    def _loop(self, backend: Backend, bar: Progress, checkpoint: dict[str, Any]) -> None:
        t, global_parts = self._restore(backend, checkpoint, bar)
        num_batches = backend.num_batches()
        while t < self.config.run.rounds:
            try:
                global_parts, checkpoint, done = self._round_and_bookkeeping(
                    backend, bar, t, global_parts, num_batches, checkpoint
                )
            except WorkerLost as exc:  # during the round, a checkpoint or a resize
                t, global_parts = self._recover(backend, exc, checkpoint, bar)
                continue
            if done:
                break
            t += 1

    def _round_and_bookkeeping(self, backend, bar, t, global_parts, num_batches, checkpoint):
        """A round, then its outputs, checkpoint and pool resize; returns the new state."""
        run = self.config.run
        row, global_parts = self._round(backend, bar, t, global_parts, num_batches)
        if self.run_dir:
            self.metrics.write(self.run_dir / METRICS_FILE)
        if self.tracker:
            self.tracker.log_new_rows(self.metrics.rows)
        bar.update(row)
        reason = stop_reason(run, row)
        done = t + 1 >= run.rounds or reason is not None
        if run.checkpoint_every and ((t + 1) % run.checkpoint_every == 0 or done):
            checkpoint = self._state(backend, t, global_parts)
            self._save_checkpoint(checkpoint)
        else:
            self._sync()  # the metrics and log of this round
        if reason:
            log.info("stopping after round %d: %s", t, reason)
        if not done and backend.maybe_resize():
            log.info("worker pool resized: %s", backend.describe())
        return global_parts, checkpoint, done

    def _round(self, backend, bar, t, global_parts, num_batches):
        """One round, top to bottom: train (local phases and server jobs), aggregate,
        evaluate, record. Returns the metrics row and the new global parts."""
        chosen = self._chosen(t)
        ledger = Ledger()
        round_start = time.perf_counter()

        local_s, jobs_s, reports = self._train(
            backend, bar, t, global_parts, chosen, num_batches, ledger
        )
        t0 = time.perf_counter()
        results, server = backend.finish_round()
        local_s += time.perf_counter() - t0

        new_parts = self._aggregate(results, ledger)

        bar.phase(f"round {t}: evaluating")
        t0 = time.perf_counter()
        eval_part = "full" if "full" in new_parts else "client"
        test = backend.evaluate(new_parts[eval_part])
        eval_s = time.perf_counter() - t0

        wall_s = time.perf_counter() - round_start
        record = self._record(
            t, wall_s, local_s, jobs_s, eval_s, test, results, server, reports, len(chosen)
        )
        row = record.as_row()
        if self.system is not None:
            row.update(self._sim_columns(t, chosen, ledger, results, server))
        else:
            ledger.take_messages()
        row = self.metrics.add_round(row, ledger.close_round())
        self._log_round(row)
        return row, new_parts

    def _train(self, backend, bar, t, global_parts, chosen, num_batches, ledger):
        """Broadcast the global parts, then the algorithm's phases for round t; returns
        (local seconds, server-job seconds, job reports)."""
        m = len(chosen)
        for part, state in global_parts.items():
            for cid in chosen:
                ledger.record(cid, ROUND, f"{PART_KINDS[part]}.down", state_bytes(state))
        expected = self.algorithm.expected_uploads({c: num_batches[c] for c in chosen})
        backend.start_round(global_parts, expected, chosen)
        local_s = jobs_s = 0.0
        reports: dict[int, JobReport] = {}
        last_stop = 0
        for phase in self.algorithm.round_phases(t, chosen):
            t0 = time.perf_counter()
            who = f"client {phase.clients[0]}" if phase.clients else f"{m} clients"
            if isinstance(phase, LocalPhase):
                bar.phase(f"round {t}: local steps ({who})")
                backend.run_local(phase.start, phase.stop, phase.clients, phase.hold_last)
                last_stop = phase.stop if phase.stop is not None else max(num_batches.values())
                local_s += time.perf_counter() - t0
            elif isinstance(phase, ServerJobPhase):
                bar.phase(f"round {t}: {phase.label} ({who})")
                done = backend.run_server_jobs(last_stop, phase.clients)
                for report in done.values():  # what goes down before step last_stop
                    for kind, nbytes in report.bytes.items():
                        ledger.record(report.cid, last_stop, kind, nbytes)
                reports.update(done)
                jobs_s += time.perf_counter() - t0
        return local_s, jobs_s, reports

    def _aggregate(self, results: list[ClientResult], ledger: Ledger) -> Parts:
        """Book the uploads of client parts, then average them with weights n_i/n."""
        for r in results:
            for part, state in r.parts.items():
                ledger.record(r.cid, ROUND, f"{PART_KINDS[part]}.up", state_bytes(state))
            for step, kind, nbytes in r.messages:
                ledger.record(r.cid, step, kind, nbytes)
        # Fixed client order: the average is bit-identical however clients were hosted.
        weights = sample_weights([r.num_samples for r in results])
        return {
            part: weighted_average([r.parts[part] for r in results], weights)
            for part in self.algorithm.shared_parts
        }

    def _record(
        self,
        t: int,
        wall_s: float,
        local_s: float,
        jobs_s: float,
        eval_s: float,
        test: dict[str, float],
        results: list[ClientResult],
        server: ServerStats,
        reports: dict[int, JobReport],
        m: int,
    ) -> RoundRecord:
        previous = self.metrics.rows[-1]["elapsed_s"] if self.metrics.rows else 0.0
        steps = sum(r.steps for r in results)
        job_figures = _mean_figures(reports.values())
        return RoundRecord(
            round=t,
            algorithm=self.algorithm.name,
            wall_s=wall_s,
            elapsed_s=previous + wall_s,
            local_s=local_s,
            align_s=jobs_s,
            eval_s=eval_s,
            samples_per_s=sum(r.num_samples for r in results) / local_s if local_s else 0.0,
            test=test,
            train_loss=server.mean_loss,
            client_loss=sum(r.loss_sum for r in results) / steps if steps else float("nan"),
            uploads=server.uploads,
            participants=m,
            client_busy_s=sum(r.busy_s for r in results),
            server_busy_s=server.busy_s,
            server_busy_frac=server.busy_s / wall_s if wall_s > 0 else 0.0,
            aligned=bool(reports),
            am_rel_error_before=job_figures.pop("am_rel_error_before", float("nan")),
            am_rel_error_after=job_figures.pop("am_rel_error_after", float("nan")),
            extra=job_figures,
        )

    def _sim_columns(self, t, chosen, ledger, results, server) -> dict[str, Any]:
        """Simulated time of round t, replayed from the messages the ledger booked."""
        messages = sorted_messages([Message(*m) for m in ledger.take_messages()])
        history = [r for r in self.metrics.rows if "sim_time_s" in r]
        work = self.system.round_work(t, chosen, messages, self._uploaded_before(t))
        measured = None
        if self.config.system.compute == "measured":  # NOT reproducible: wall time
            measured = {"client": {r.cid: r.busy_s for r in results}, "server": server.busy_s}
        result = self.system.time_round(work, measured)
        return sim_columns(result, history[-1]["sim_time_s"] if history else 0.0)

    def _uploaded_before(self, t: int):
        """Samples each client uploaded before round t (its alignment buffer's fill)."""
        sm = self.system
        rounds = Counter(cid for r in range(t) for cid in self._chosen(r))
        return lambda cid: rounds[cid] * uploaded_samples(sm.algorithm, sm.client_sizes[cid])

    def _chosen(self, t: int) -> list[int]:
        """Round t's participants; with a system model, those of them available."""
        n, alg = len(self.prepared.parts), self.config.algorithm
        chosen = participants(t, n, alg.clients_per_round, self.config.run.seed)
        if self.system is None:
            return chosen
        return available(t, chosen, self.system.devices, self.config.run.seed)

    def _log_round(self, row: dict[str, Any]) -> None:
        names = self.prepared.world.task.metric_names  # "test_acc" is logged as "acc"
        test = " ".join(f"{k.removeprefix('test_')} {row[k]:.4f}" for k in names)
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


def system_model(config: Config, algorithm: Algorithm, p: Prepared) -> SystemModel | None:
    """The run's devices and FLOPs per sample, when `system` is on."""
    if not config.system.enabled:
        return None
    if config.system.compute == "measured":
        log.warning(
            "system.compute=measured: simulated time follows this machine's busy "
            "time, so it is NOT reproducible (system.compute=flops is)"
        )
    template = build_template(p.world)
    flops = count_step_flops(template, p.world.task, p.train)
    return SystemModel.build(config, algorithm, flops, p.client_sizes)


def resolve_at_start(config: Config) -> Config:
    """Fix what would otherwise drift, so that config.yaml keeps it: a linear schedule's
    horizon (optim.decay_rounds = run.rounds; a resume with more rounds does not stretch it)
    and the thread count of every process (a later layout does not change the sums)."""
    optim, runtime = config.optim, config.runtime
    if optim.schedule == "linear" and optim.decay_rounds is None:
        config = replace(config, optim=replace(optim, decay_rounds=config.run.rounds))
    if runtime.torch_threads is None:
        config = replace(config, runtime=replace(runtime, torch_threads=torch_threads(runtime)))
    return config


def _mean_figures(reports) -> dict[str, float]:
    """Each job figure averaged over the clients that report it."""
    values: dict[str, list[float]] = {}
    for report in reports:
        for key, value in report.metrics.items():
            values.setdefault(key, []).append(value)
    return {key: float(np.mean(v)) for key, v in values.items()}
