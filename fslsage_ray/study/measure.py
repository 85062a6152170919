"""One run of a scaling study, measured: time per round, time to the first round, memory of
the whole session, the actor layout, and what the run learned.

The run writes its own run folder (config, per-round metrics) like any other, so `plot` and
`compare` read it too; the study keeps one row of figures per run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from fslsage_ray.outputs.headline import HeadlineMetric
from fslsage_ray.outputs.metrics import MetricsTable
from fslsage_ray.outputs.storage import Where
from fslsage_ray.runtime.session_memory import SessionMemory
from fslsage_ray.study.design import StudyRun

GIB = 2**30


def hooked_metrics(
    base: type[MetricsTable], every: int, on_round: Callable[[int, dict[str, Any]], None]
) -> type[MetricsTable]:
    """A metrics table class that calls on_round(rounds_done, row) after every `every`-th
    round, at the round's end (workers idle, before Ray shuts down after the last one)."""

    class HookedMetrics(base):  # type: ignore[misc, valid-type]
        def add_round(self, row: Mapping[str, Any], bytes_by_kind: Mapping[str, int]) -> dict:
            full = super().add_round(row, bytes_by_kind)
            if len(self.rows) % every == 0:
                on_round(len(self.rows), full)
            return full

    return HookedMetrics


def median_round_s(walls: list[float]) -> float:
    """Median seconds per round, round 0 left out (start-up and the first alignment) when
    there are later rounds."""
    timed = walls[1:] or walls
    return statistics.median(timed) if timed else float("nan")


def _layout(backend: Any) -> tuple[int, int]:
    """(client actors, most clients on one actor); in-process: no actors, all clients here."""
    layout = getattr(backend, "layout", None)  # RayBackend's ActorLayout
    if layout is None or not layout.groups:
        return 0, 0
    return layout.num_actors, max(len(g) for g in layout.groups)


def measure_run(
    run: StudyRun, run_dir: Where, memory: SessionMemory, progress: bool = False
) -> dict[str, Any]:
    """Train one run (its folder replaced) and return its row of the study table."""
    from fslsage_ray.simulation import Simulation

    memory.take()  # what came before this run is not its peak
    started = time.perf_counter()
    seen: dict[str, Any] = {}

    def on_round(done: int, _row: dict[str, Any]) -> None:
        if done == 1:
            seen["first_round_s"] = time.perf_counter() - started
            seen["layout"] = _layout(sim.backend)

    sim = Simulation(run.config, run_dir, overwrite=True, progress=progress)
    headline = HeadlineMetric(sim.metrics.headline, sim.metrics.goal)
    sim.metrics = hooked_metrics(type(sim.metrics), 1, on_round)(headline.column, headline.goal)
    table = sim.run()
    peaks = memory.take()
    rows = table.to_pylist()
    values = [r.get(headline.column) for r in rows]
    measured = [v for v in values if headline.best([v]) is not None]
    actors, per_actor = seen.get("layout", (0, 0))
    busy = [
        r["server_busy_frac"] for r in rows[1:] or rows if r.get("server_busy_frac") is not None
    ]
    return {
        "run": run.name,
        "method": run.method,
        "clients": run.clients,
        "seed": run.seed,
        "backend": run.config.runtime.backend,
        "rounds": len(rows),
        "s_per_round": median_round_s([r["wall_s"] for r in rows]),
        "first_round_s": seen.get("first_round_s", float("nan")),
        "peak_memory_bytes": peaks.uss,
        "memory_complete": peaks.uss_complete,
        "peak_store_bytes": peaks.store if run.config.runtime.backend == "ray" else None,
        "memory_samples": peaks.samples,
        "sampler_cost_s": peaks.cost_s,
        "client_actors": actors,
        "clients_per_actor": per_actor,
        "server_busy_frac": statistics.median(busy) if busy else float("nan"),
        "gib_per_round": (rows[-1]["comm_gib_cum"] / len(rows)) if rows else 0.0,
        "headline": headline.column,
        "goal": headline.goal,
        "final": float(measured[-1]) if measured else float("nan"),
        "best": headline.best(values) if measured else float("nan"),
    }
