"""The coordinator: runs rounds of an algorithm on a backend and records what happened.

    table = Simulation(load_config("configs/digits/fsl_sage.yaml")).run()

Everything that can be checked without training (config, data, partition, model shapes,
resources, callbacks) is checked before the first round starts. `Simulation` puts the
pieces of fslsage_ray/run/ together: the run folder, the start-up, the round driver, the
training loop and the callbacks (fslsage_ray/callbacks.py), the user's own among them.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa

from fslsage_ray.algorithms.authors_ledger import AuthorsView, check_authors_view
from fslsage_ray.algorithms.base import Algorithm
from fslsage_ray.algorithms.registry import get_algorithm
from fslsage_ray.config import Config, ConfigError, load_config
from fslsage_ray.errors import RunInterrupted
from fslsage_ray.experiment import WorldSpec, authors_view, check_models
from fslsage_ray.outputs.callbacks import CallbackList, RunCallback, RunInfo, load_callbacks
from fslsage_ray.outputs.metrics import MetricsTable
from fslsage_ray.outputs.progress import ProgressBar, print_over_bars
from fslsage_ray.outputs.provenance import PROVENANCE_FILE, ProvenanceRecord, provenance_entry
from fslsage_ray.outputs.run_dir import CONFIG_FILE, LOG_FILE, METRICS_FILE
from fslsage_ray.outputs.storage import Where, download, is_uri
from fslsage_ray.outputs.trackers import TrackerCallback, check_tracker, make_tracker
from fslsage_ray.probes.generation import GenerationRunner
from fslsage_ray.probes.runner import ProbeRunner, check_probes
from fslsage_ray.run.best import BestKeeper, keeps_best
from fslsage_ray.run.driver import RoundDriver
from fslsage_ray.run.folder import RunFolder
from fslsage_ray.run.round_log import RoundLogLine
from fslsage_ray.run.startup import (
    Prepared,
    build_models,
    make_backend,
    prepare,
    read_data,
    resolve_at_start,
    sizes_text,
    system_model,
)
from fslsage_ray.run.stop_rules import StopRules, stop_reason
from fslsage_ray.run.training import Training
from fslsage_ray.stopping import Stopper, stop_on_signals
from fslsage_ray.system.schedule import RoundSchedule
from fslsage_ray.tasks.compute import Compute

log = logging.getLogger("fslsage_ray")

__all__ = [  # names older code imports from here
    "Prepared",
    "Simulation",
    "make_backend",
    "prepare",
    "resolve_at_start",
    "sizes_text",
    "stop_reason",
]


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
        callbacks: Sequence[RunCallback] = (),
    ) -> None:
        """`callbacks` run after the built-in ones and those named in run.callbacks."""
        config = resolve_at_start(config)
        self.config = config
        self.folder = RunFolder(config, run_dir, overwrite, write_outputs, resume)
        check_tracker(config.run)  # a missing tracker library is refused before any work
        user_callbacks = [*load_callbacks(config.run.callbacks), *callbacks]
        read = read_data(config)  # bad data or partition fails here, before any Ray work
        task = read.data.task
        check_models(WorldSpec(config, task))  # and a model the task cannot use
        check_probes(config, get_algorithm(config), task)  # and a probe that cannot measure
        if config.run.authors_ledger:  # and the authors' byte count where it is undefined
            check_authors_view(config)
        self.folder.check_resumable_with(task, read.data.files, allow_data_change)
        self.tracker = make_tracker(
            config.run,
            self.folder.local if write_outputs else None,
            (*task.metric_names, "train_loss"),  # also logged against GiB (trackers.py)
        )
        self.fit_lines: tuple[str, ...] = ()  # the 'auto' GPU fit's decisions, for run.log
        if config.runtime.gpus_auto:  # GPU shares sized from the memory plan, for these nodes
            from fslsage_ray.memory.auto import fit_to_cluster

            fitted = fit_to_cluster(config)  # a layout that cannot fit is refused here
            self.fit_lines = fitted.lines
            config = self.config = fitted.config  # config.yaml keeps "auto" (the folder's)
        self.backend = make_backend(config)
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
                self.folder.create(task)
                self.folder.sync()
            except BaseException:  # release the reservation: a refused run holds nothing
                self.backend.close()
                self.folder.discard()  # and leaves no run folder behind
                raise
        # Seconds each start-up phase took, logged when the run starts (benchmarks/startup.py);
        # the models were built while the cluster started.
        self.startup = {
            "data": self.prepared.load_s,
            "models": self.prepared.models_s,
            "cluster": cluster_s,
        }
        self.algorithm: Algorithm = get_algorithm(config)
        self.schedule = RoundSchedule.of(
            config, len(self.prepared.parts), self.system.devices if self.system else None
        )
        self.metrics = MetricsTable(headline=task.headline, goal=task.goal)
        built_in: list[RunCallback] = [RoundLogLine()]
        if self.tracker:
            artifacts = (CONFIG_FILE, METRICS_FILE, PROVENANCE_FILE, LOG_FILE)
            built_in.append(TrackerCallback(self.tracker, artifacts))
        built_in += [ProgressBar(progress), StopRules(config.run), ProvenanceRecord()]
        self.callbacks = CallbackList([*built_in, *user_callbacks])
        self._training: Training | None = None

    @property
    def location(self) -> str:
        """The run folder or URI, as the user named it."""
        return self.folder.location

    @property
    def run_dir(self) -> Path | None:
        """The local folder the run writes (a URI's staging folder); None: no outputs."""
        return self.folder.path

    @property
    def restarts(self) -> int:
        """Times lost workers were replaced in this run."""
        return self._training.restarts if self._training else 0

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        overrides: Sequence[str] = (),
        progress: bool = True,
        allow_data_change: bool = False,
        callbacks: Sequence[RunCallback] = (),
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
            config,
            run_dir,
            progress=progress,
            resume=True,
            allow_data_change=allow_data_change,
            callbacks=callbacks,
        )

    def run(self) -> pa.Table:
        """Train for run.rounds rounds (or until a stop rule ends it); returns the metrics.

        SIGTERM or SIGINT meanwhile abandons the round, prints one line (what is kept, how
        to resume) and raises RunInterrupted once the workers are stopped."""
        with stop_on_signals() as stopper:
            return self._run(stopper)

    def _run(self, stopper: Stopper) -> pa.Table:
        folder, backend, callbacks = self.folder, self.backend, self.callbacks
        folder.attach_log()
        ok = refused = False
        try:
            task = self.prepared.world.task
            info = RunInfo(
                self.config, task, folder.path, folder.location, self.metrics, self.provenance
            )
            callbacks.on_run_start(info)
            folder.sync()  # provenance.json, as the run starts
            callbacks.on_phase("starting workers")
            self._start_workers()
            driver = RoundDriver(
                self.config,
                self.algorithm,
                backend,
                self.schedule,
                self.system,
                self.metrics,
                callbacks,
                self._probes(),
                self._authors_view(),
                GenerationRunner(self.config, task) if self.config.run.generates else None,
            )
            best = (
                BestKeeper(self.config, task, task.fingerprint(), folder.path, folder.remove)
                if folder.path is not None and keeps_best(self.config, task)
                else None
            )
            self._training = Training(driver, folder, callbacks, task.fingerprint(), best)
            if folder.resumed is not None:
                checkpoint = folder.resumed
                log.info("resuming after round %d", checkpoint["round"])
            else:
                checkpoint = self._training.state(-1, self.prepared.initial_parts)
            self._training.run_from(checkpoint)
            ok = True
        except KeyboardInterrupt:  # our signal handler's Stop, or Ray's rendering of it
            line = folder.stopped_line(stopper.name, len(self.metrics.rows))
            print_over_bars(line)  # before the workers' slower shutdown
            log.warning("%s", line)
            raise RunInterrupted(line, stopper.exit_code) from None
        except ConfigError:  # refused before its first round: no run folder is left behind
            refused = not self.metrics.rows
            raise
        finally:
            try:
                callbacks.on_run_end(ok)
            finally:
                backend.close()
                folder.detach_log()
                if refused:
                    folder.discard()
                folder.close()
        return self.metrics.to_arrow()

    def _authors_view(self) -> AuthorsView | None:
        """The authors' byte count (run.authors_ledger); None: off."""
        if not self.config.run.authors_ledger:
            return None
        p = self.prepared
        return authors_view(self.config, p.world.task, p.sizes)

    def _probes(self) -> ProbeRunner | None:
        """The run's leakage probes (config `probes`); None: none listed."""
        if not self.config.probes.enabled:
            return None
        p = self.prepared
        return ProbeRunner(
            self.config, self.algorithm, p.world.task, p.train, p.parts, self.folder.path
        )

    def _start_workers(self) -> None:
        p = self.prepared
        started = time.perf_counter()
        self.backend.start(p.world, p.train, p.test, p.parts)
        self.startup["workers"] = time.perf_counter() - started
        for line in self.fit_lines:  # how the 'auto' GPU shares were sized, with each reason
            log.info("gpu fit: %s", line)
        log.info("backend: %s", self.backend.describe())
        log.info("start-up: %s", ", ".join(f"{k} {v:.1f}s" for k, v in self.startup.items()))
        log.info("clients: %d, samples per client: %s", len(p.parts), sizes_text(p.client_sizes))
        model = self.config.model
        log.info("compute: %s", Compute(model.precision, model.channels_last).describe())
