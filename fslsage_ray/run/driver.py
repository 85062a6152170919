"""One round, top to bottom: who takes part, train (local phases and server jobs),
aggregate, evaluate, record. The driver books every message in the round's ledger and
returns the round's row; what happens to the row (callbacks, checkpoints) is training.py's.
"""

from __future__ import annotations

import time
from typing import Any

from fslsage_ray.algorithms.aggregate import sample_weights, weighted_average
from fslsage_ray.algorithms.authors_ledger import AuthorsView
from fslsage_ray.algorithms.base import PART_KINDS, Algorithm, Parts
from fslsage_ray.algorithms.jobs import JobReport
from fslsage_ray.algorithms.ledger import Ledger, state_bytes
from fslsage_ray.algorithms.phases import LocalPhase, ServerJobPhase
from fslsage_ray.config import Config
from fslsage_ray.outputs.callbacks import CallbackList
from fslsage_ray.outputs.metrics import MetricsTable
from fslsage_ray.probes.generation import GenerationRunner
from fslsage_ray.probes.runner import ProbeRunner
from fslsage_ray.run.record import RoundRecord, job_figures
from fslsage_ray.runtime.backend import Backend, ServerStats
from fslsage_ray.runtime.client_host import ClientResult
from fslsage_ray.system.events import ROUND, Message, sorted_messages
from fslsage_ray.system.schedule import RoundSchedule
from fslsage_ray.system.timing import SystemModel, sim_columns


class RoundDriver:
    """Plays rounds of `algorithm` on a started backend; rows go into `metrics`."""

    def __init__(
        self,
        config: Config,
        algorithm: Algorithm,
        backend: Backend,
        schedule: RoundSchedule,
        system: SystemModel | None,
        metrics: MetricsTable,
        callbacks: CallbackList,
        probes: ProbeRunner | None = None,
        authors: AuthorsView | None = None,
        generation: GenerationRunner | None = None,
    ) -> None:
        """`probes`: the run's leakage probes (None: probes.list is empty); `authors`: the
        authors' byte count, priced from the same messages (None: run.authors_ledger off);
        `generation`: the generation scores (None: run.generate_every is off)."""
        self.config = config
        self.algorithm = algorithm
        self.backend = backend
        self.schedule = schedule
        self.system = system  # None: no simulated time
        self.metrics = metrics
        self.callbacks = callbacks
        self.probes = probes
        self.authors = authors
        self.generation = generation
        self.num_batches = backend.num_batches()

    def play_round(self, t: int, global_parts: Parts) -> tuple[dict[str, Any], Parts]:
        """Round t from the global parts; returns its row (stored in the table, callbacks'
        columns not yet added) and the new global parts."""
        chosen = self.schedule.clients(t)
        ledger = Ledger()
        round_start = time.perf_counter()

        local_s, jobs_s, reports = self._train(t, global_parts, chosen, ledger)
        t0 = time.perf_counter()
        results, server = self.backend.finish_round()
        local_s += time.perf_counter() - t0

        new_parts = self._aggregate(results, ledger)

        self.callbacks.on_phase(f"round {t}: evaluating")
        t0 = time.perf_counter()
        eval_part = "full" if "full" in new_parts else "client"
        test = self.backend.evaluate(new_parts[eval_part])
        eval_s = time.perf_counter() - t0

        wall_s = time.perf_counter() - round_start
        record = self._record(
            t, wall_s, local_s, jobs_s, eval_s, test, results, server, reports, len(chosen)
        )
        row = record.as_row()
        if self.probes is not None:  # reads the round's state and messages, changes neither
            self.callbacks.on_phase(f"round {t}: probes")
            self.probes.observe(t, ledger.messages())
            row.update(self.probes.columns(t, self.backend, new_parts))
        if self.authors is not None:
            priced = self.authors.round_bytes((k, n) for _, _, k, n in ledger.messages())
            previous = self.metrics.rows[-1] if self.metrics.rows else None
            row.update(self.authors.columns(sum(priced.values()), previous))
        if self.generation is not None:  # read-only too, as the probes
            self.callbacks.on_phase(f"round {t}: decoding test MRs")
            row.update(self.generation.columns(t, self.backend, new_parts))
        if self.system is not None:
            row.update(self._sim_columns(t, chosen, ledger, results, server))
        else:
            ledger.take_messages()
        return self.metrics.add_round(row, ledger.close_round()), new_parts

    def _train(self, t, global_parts, chosen, ledger):
        """Broadcast the global parts, then the algorithm's phases for round t; returns
        (local seconds, server-job seconds, job reports)."""
        backend, num_batches = self.backend, self.num_batches
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
            who = f"client {phase.clients[0]}" if phase.clients else f"{len(chosen)} clients"
            if isinstance(phase, LocalPhase):
                self.callbacks.on_phase(f"round {t}: local steps ({who})")
                backend.run_local(phase.start, phase.stop, phase.clients, phase.hold_last)
                last_stop = phase.stop if phase.stop is not None else max(num_batches.values())
                local_s += time.perf_counter() - t0
            elif isinstance(phase, ServerJobPhase):
                self.callbacks.on_phase(f"round {t}: {phase.label} ({who})")
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
            figures=job_figures(self.algorithm.job_figures, reports.values()),
        )

    def _sim_columns(self, t, chosen, ledger, results, server) -> dict[str, Any]:
        """Simulated time of round t, replayed from the messages the ledger booked."""
        sm = self.system
        messages = sorted_messages([Message(*m) for m in ledger.take_messages()])
        history = [r for r in self.metrics.rows if "sim_time_s" in r]
        before = self.schedule.uploaded_before(t, sm.uploads_per_round)
        work = sm.round_work(t, chosen, messages, before)
        measured = None
        if self.config.system.compute == "measured":  # NOT reproducible: wall time
            measured = {"client": {r.cid: r.busy_s for r in results}, "server": server.busy_s}
        result = sm.time_round(work, measured)
        return sim_columns(result, history[-1]["sim_time_s"] if history else 0.0)
