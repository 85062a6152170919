"""Run a scaling study into a folder: one run folder per run, and `scaling.parquet` with one
row per finished run, rewritten after each, so a study that stopped half-way resumes where
it stopped (finished runs are kept, the unfinished ones start again).

With `parallel` the in-process runs go at the same time as Ray tasks: they learn what they
learn one after another, but their seconds and memory are measured while other runs share
the machine (memory: the run's own worker process), so each row says `parallel`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fslsage_ray.config import ConfigError
from fslsage_ray.outputs.resume import held_job, job_spec, write_job
from fslsage_ray.runtime.session_memory import SessionMemory
from fslsage_ray.runtime.task_pool import as_finished
from fslsage_ray.study.design import StudyRun
from fslsage_ray.study.measure import measure_run

TABLE_FILE = "scaling.parquet"
SPEC_FILE = "study.json"


def finished_rows(out_dir: Path, runs: Sequence[StudyRun], overwrite: bool) -> list[dict]:
    """Rows of the runs already finished in out_dir (none with overwrite). A folder holding
    another study is refused, so results of two studies never mix in one table."""
    if overwrite:
        return []
    held = held_job(out_dir, SPEC_FILE, job_spec((r.name, r.config) for r in runs), "study")
    if held is None:
        if out_dir.is_dir() and any(out_dir.iterdir()):
            raise ConfigError(f"{out_dir} is not empty and holds no study; pass --overwrite")
        return []
    table_path = out_dir / TABLE_FILE
    if not table_path.is_file():
        return []
    names = {r.name for r in runs}
    return [row for row in pq.read_table(table_path).to_pylist() if row["run"] in names]


def run_study(
    runs: Sequence[StudyRun],
    out_dir: Path,
    overwrite: bool = False,
    progress: bool = True,
    sample_every: float = 2.0,
    parallel: bool = False,
) -> pa.Table:
    """Run what is not finished yet (in order, or with `parallel` at the same time as Ray
    tasks); returns the whole table, rewritten after every run that finishes."""
    if parallel and runs and runs[0].config.runtime.backend != "inprocess":
        raise ConfigError(
            "--parallel runs each run in-process inside a Ray task; set runtime.backend=inprocess"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = finished_rows(out_dir, runs, overwrite)
    write_job(out_dir, SPEC_FILE, job_spec((r.name, r.config) for r in runs))
    done = {row["run"] for row in rows}
    todo = [r for r in runs if r.name not in done]
    if not todo:
        return pa.Table.from_pylist(rows)
    order = {r.name: k for k, r in enumerate(runs)}
    started_ray = False
    if parallel or todo[0].config.runtime.backend == "ray":  # one Ray for every run
        from fslsage_ray.runtime.cluster import connect

        started_ray = connect(todo[0].config.runtime)
    try:
        measured = _in_tasks if parallel else _in_turn
        for row in measured(todo, out_dir, progress, sample_every, len(done), len(runs)):
            rows.append(row)
            rows.sort(key=lambda row: order[row["run"]])
            tmp = out_dir / (TABLE_FILE + ".tmp")
            pq.write_table(pa.Table.from_pylist(rows), tmp)
            tmp.replace(out_dir / TABLE_FILE)
    finally:
        from fslsage_ray.runtime.cluster import shutdown_private

        shutdown_private(started_ray)  # kept in a Jupyter kernel for its next study
    return pa.Table.from_pylist(rows)


def _in_turn(
    todo: Sequence[StudyRun], out_dir: Path, progress: bool, every: float, done: int, total: int
) -> Iterator[dict[str, Any]]:
    """One run after another, the whole session's memory sampled (one sampler per host)."""
    memory = SessionMemory(todo[0].config.runtime.backend == "ray", every)
    try:
        for i, run in enumerate(todo, 1):
            print(f"[{done + i}/{total}] {run.name}", flush=True)
            yield measure_run(run, out_dir / run.name, memory, progress) | {"parallel": False}
    finally:
        memory.close()


def _measure_in_task(run: StudyRun, run_dir: Path, every: float) -> dict[str, Any]:
    """One in-process run inside a Ray task, the memory of its own worker process sampled."""
    memory = SessionMemory(False, every)
    try:
        return measure_run(run, run_dir, memory) | {"parallel": True}
    finally:
        memory.close()


def _in_tasks(
    todo: Sequence[StudyRun], out_dir: Path, _progress: bool, every: float, done: int, total: int
) -> Iterator[dict[str, Any]]:
    """The runs at the same time as Ray tasks (runtime/task_pool), one CPU each and a fresh
    worker per run (no memory left over from another run); rows as runs finish. Each run's
    thread count is fixed before it is sent, so it learns exactly what it learns alone."""
    from fslsage_ray.simulation import resolve_at_start

    sent = []
    for i, run in enumerate(todo, 1):
        print(f"[{done + i}/{total}] {run.name} (Ray task)", flush=True)
        sent.append((replace(run, config=resolve_at_start(run.config)), out_dir / run.name, every))
    for i, row in as_finished(_measure_in_task, sent, fresh_worker=True):
        print(f"finished {todo[i].name}", flush=True)
        yield row
