"""Run a scaling study into a folder: one run folder per run, and `scaling.parquet` with one
row per finished run, rewritten after each, so a study that stopped half-way resumes where
it stopped (finished runs are kept, the unfinished one starts again).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fslsage_ray.config import ConfigError
from fslsage_ray.outputs.resume import held_job, job_spec, write_job
from fslsage_ray.runtime.session_memory import SessionMemory
from fslsage_ray.study.measure import measure_run
from fslsage_ray.study.plan import StudyRun

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
) -> pa.Table:
    """Run what is not finished yet, in order; returns the whole table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = finished_rows(out_dir, runs, overwrite)
    write_job(out_dir, SPEC_FILE, job_spec((r.name, r.config) for r in runs))
    done = {row["run"] for row in rows}
    todo = [r for r in runs if r.name not in done]
    if not todo:
        return pa.Table.from_pylist(rows)
    with_ray = todo[0].config.runtime.backend == "ray"
    started_ray = False
    if with_ray:  # one Ray for every run, and the memory samplers in it
        from fslsage_ray.runtime.cluster import connect

        started_ray = connect(todo[0].config.runtime)
    memory = SessionMemory(with_ray, sample_every)
    try:
        for i, run in enumerate(todo, 1):
            print(f"[{len(done) + i}/{len(runs)}] {run.name}", flush=True)
            rows.append(measure_run(run, out_dir / run.name, memory, progress))
            order = {r.name: k for k, r in enumerate(runs)}
            rows.sort(key=lambda row: order[row["run"]])
            tmp = out_dir / (TABLE_FILE + ".tmp")
            pq.write_table(pa.Table.from_pylist(rows), tmp)
            tmp.replace(out_dir / TABLE_FILE)
    finally:
        memory.close()
        if started_ray:
            import ray

            ray.shutdown()
    return pa.Table.from_pylist(rows)
