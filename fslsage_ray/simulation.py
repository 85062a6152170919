"""The coordinator: runs rounds of an algorithm on a backend and records what happened.

    table = Simulation(load_config("configs/digits/fsl_sage.yaml")).run()

Everything that can be checked without training (config, data, partition, model shapes,
resources) is checked before the first round starts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from fslsage_ray.algorithms.aggregate import sample_weights, weighted_average
from fslsage_ray.algorithms.base import PART_KINDS, Algorithm, ModelSizes, Parts
from fslsage_ray.algorithms.ledger import GIB, Ledger, state_bytes
from fslsage_ray.algorithms.phases import AlignPhase, LocalPhase
from fslsage_ray.algorithms.registry import get_algorithm
from fslsage_ray.config import Config
from fslsage_ray.experiment import (
    WorldSpec,
    build_template,
    load_data,
    model_sizes,
    partition,
    shared_aux,
    world_spec,
)
from fslsage_ray.outputs.metrics import MetricsTable
from fslsage_ray.outputs.progress import Progress
from fslsage_ray.outputs.run_dir import (
    METRICS_FILE,
    attach_log,
    check_run_dir,
    default_run_dir,
    detach_log,
    prepare_run_dir,
)
from fslsage_ray.runtime.backend import Backend

log = logging.getLogger("fslsage_ray")


def make_backend(config: Config) -> Backend:
    if config.runtime.backend == "inprocess":
        from fslsage_ray.runtime.inprocess import InProcessBackend

        return InProcessBackend()
    from fslsage_ray.runtime.ray_backend import RayBackend

    return RayBackend()


@dataclass
class Prepared:
    """The driver's one-time work: data read and split, shapes known."""

    world: WorldSpec
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    parts: list[np.ndarray]
    sizes: ModelSizes
    initial_parts: Parts

    @property
    def client_sizes(self) -> list[int]:
        return [len(p) for p in self.parts]


def prepare(config: Config) -> Prepared:
    bundle = load_data(config)
    parts = partition(config, bundle.train.labels)
    world = world_spec(config, bundle)
    template = build_template(world)
    algorithm = get_algorithm(config)
    return Prepared(
        world,
        (bundle.train.images, bundle.train.labels),
        (bundle.test.images, bundle.test.labels),
        parts,
        model_sizes(world, template),
        algorithm.initial_parts(template, shared_aux(world, template)),
    )


class Simulation:
    def __init__(
        self,
        config: Config,
        run_dir: str | Path | None = None,
        overwrite: bool = False,
        progress: bool = True,
        write_outputs: bool = True,
    ) -> None:
        self.config = config
        target = Path(run_dir) if run_dir is not None else default_run_dir(config)
        if write_outputs:
            check_run_dir(target, overwrite)
        self.prepared = prepare(config)  # bad data or config fails here, before any Ray work
        self.run_dir: Path | None = None
        if write_outputs:
            self.run_dir = prepare_run_dir(target, config, overwrite)
        self.show_progress = progress
        self.algorithm: Algorithm = get_algorithm(config)
        self.metrics = MetricsTable()

    def run(self) -> pa.Table:
        """Train for run.rounds rounds (or until run.max_gib); returns the metrics table."""
        handler = attach_log(self.run_dir) if self.run_dir else None
        backend = make_backend(self.config)
        bar = Progress(self.config.run.rounds, self.config.run.name, self.show_progress)
        try:
            p = self.prepared
            bar.phase("starting workers")
            backend.start(p.world, p.train, p.test, p.parts)
            log.info("backend: %s", backend.describe())
            log.info("clients: %d, samples per client: %s", len(p.parts), p.client_sizes)
            self._loop(backend, bar)
        finally:
            bar.close()
            backend.close()
            if handler:
                detach_log(handler)
        return self.metrics.to_arrow()

    def _loop(self, backend: Backend, bar: Progress) -> None:
        cfg, p, algorithm = self.config, self.prepared, self.algorithm
        m = len(p.parts)
        num_batches = backend.num_batches()
        expected = algorithm.expected_uploads(num_batches)
        global_parts = p.initial_parts
        ledger = Ledger()
        started = time.perf_counter()
        for t in range(cfg.run.rounds):
            round_start = time.perf_counter()
            for part, state in global_parts.items():
                ledger.add(f"{PART_KINDS[part]}.down", state_bytes(state), times=m)
            backend.start_round(global_parts, expected)
            local_s = align_s = 0.0
            align_results = {}
            last_stop = 0
            for phase in algorithm.round_phases(t):
                t0 = time.perf_counter()
                if isinstance(phase, LocalPhase):
                    bar.phase(f"round {t}: local steps")
                    self._run_local(backend, phase)
                    last_stop = phase.stop if phase.stop is not None else max(num_batches.values())
                    local_s += time.perf_counter() - t0
                elif isinstance(phase, AlignPhase):
                    bar.phase(f"round {t}: aligning {m} AMs")
                    align_results = backend.align(last_stop)
                    for result in align_results.values():
                        ledger.add("aux_model.down", state_bytes(result.state))
                    align_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            results, (server_loss, uploads) = backend.finish_round()
            local_s += time.perf_counter() - t0
            for r in results:
                for part, state in r.parts.items():
                    ledger.add(f"{PART_KINDS[part]}.up", state_bytes(state))
                ledger.merge(r.bytes)
            # Fixed client order: the average is bit-identical however clients were hosted.
            weights = sample_weights([r.num_samples for r in results])
            global_parts = {
                part: weighted_average([r.parts[part] for r in results], weights)
                for part in algorithm.shared_parts
            }
            t0 = time.perf_counter()
            bar.phase(f"round {t}: evaluating")
            eval_part = "full" if "full" in global_parts else "client"
            test_acc, test_loss = backend.evaluate(global_parts[eval_part])
            eval_s = time.perf_counter() - t0
            steps = sum(r.steps for r in results)
            row = {
                "round": t,
                "algorithm": algorithm.name,
                "wall_s": time.perf_counter() - round_start,
                "elapsed_s": time.perf_counter() - started,
                "local_s": local_s,
                "align_s": align_s,
                "eval_s": eval_s,
                "samples_per_s": sum(p.client_sizes) / local_s if local_s > 0 else 0.0,
                "test_acc": test_acc,
                "test_loss": test_loss,
                "train_loss": server_loss,
                "client_loss": sum(r.loss_sum for r in results) / steps if steps else float("nan"),
                "uploads": uploads,
                "aligned": bool(align_results),
                "am_rel_error_before": _mean_or_nan(
                    [r.rel_error_before for r in align_results.values()]
                ),
                "am_rel_error_after": _mean_or_nan(
                    [r.rel_error_after for r in align_results.values()]
                ),
            }
            full = self.metrics.add_round(row, ledger.close_round())
            if self.run_dir:
                self.metrics.write(self.run_dir / METRICS_FILE)
            log.info(
                "round %d acc %.4f loss %.4f GiB %.4f wall %.1fs (align %.1fs)",
                t,
                test_acc,
                test_loss,
                full["comm_gib_cum"],
                full["wall_s"],
                align_s,
            )
            bar.update(full)
            if cfg.run.max_gib is not None and full["comm_bytes_cum"] >= cfg.run.max_gib * GIB:
                log.info("communication budget of %s GiB spent after round %d", cfg.run.max_gib, t)
                break

    def _run_local(self, backend: Backend, phase: LocalPhase) -> None:
        if not self.algorithm.sequential_clients:
            backend.run_local(phase.start, phase.stop)
            return
        for cid in range(len(self.prepared.parts)):  # clients take turns, in id order
            backend.run_local(phase.start, phase.stop, only=[cid])


def _mean_or_nan(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")
