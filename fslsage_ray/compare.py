"""Several algorithms (and optionally a sweep of one setting) on the same split and seed.

Each run gets its own folder under the output folder; then one combined table, the figures
and a summary are written next to them. Every config is validated before the first run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fslsage_ray import registry
from fslsage_ray.config import Config, ConfigError, config_from_dict, config_to_dict
from fslsage_ray.config.load import parse_overrides
from fslsage_ray.outputs.provenance import (
    PROVENANCE_FILE,
    append_provenance,
    provenance_entry,
    read_provenance,
)
from fslsage_ray.outputs.resume import held_job, job_spec, write_job
from fslsage_ray.outputs.run_dir import METRICS_FILE, check_run_dir
from fslsage_ray.outputs.storage import Where, is_file, join, output_folder, read_bytes
from fslsage_ray.outputs.trackers import check_tracker, make_tracker
from fslsage_ray.runtime.task_pool import as_finished

SPEC_FILE = "compare.json"  # the comparison and its finished runs, for resuming it
DEFAULT_METHODS = ("fsl_sage", "cse_fsl", "fsl_an", "sflv1", "sflv2", "fedavg")


def parse_methods(text: str | None) -> list[str]:
    """Names from `--methods`, checked against the registry (plugins' methods included)."""
    methods = list(DEFAULT_METHODS) if not text else [m.strip() for m in text.split(",") if m]
    known = registry.algorithm_names()
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; choose from {', '.join(known)}")
    return methods


def parse_sweep(text: str | None) -> tuple[str, list[str]] | None:
    """`data.alpha=1,10,100` -> ("data.alpha", ["1", "10", "100"])."""
    if not text:
        return None
    key, sep, values = text.partition("=")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not items:
        raise ConfigError(f"--sweep {text!r} must look like section.key=v1,v2,...")
    return key.strip(), items


def parse_int_list(text: str, option: str, minimum: int, example: str) -> list[int]:
    """`200,201` -> [200, 201]: distinct integers >= minimum, or one line naming the option."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < minimum or len(set(values)) < len(values):
        kind = "non-negative" if minimum == 0 else f">= {minimum}"
        raise ConfigError(f"{option} {text!r} must be distinct {kind} integers, e.g. {example}")
    return values


def parse_seeds(text: str | None) -> list[int] | None:
    """`--seeds 200,201,202` -> [200, 201, 202]; None keeps the config's run.seed."""
    return parse_int_list(text, "--seeds", 0, "200,201") if text else None


def with_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """Apply overrides through the loader, so every changed value is validated again."""
    raw = config_to_dict(config)
    for section, values in parse_overrides(overrides).items():
        raw.setdefault(section, {}).update(values)
    return config_from_dict(raw)


def design_comparison(
    config: Config,
    methods: Sequence[str],
    sweep: tuple[str, list[str]] | None,
    seeds: Sequence[int] | None = None,
) -> list[tuple[str, Config]]:
    """(folder name, config) for every run, all validated now; with seeds, every run once
    per seed (`fsl_sage-seed201`), which tables and figures then show as mean and spread."""
    runs = []
    values = sweep[1] if sweep else [None]
    for value in values:
        for method in methods:
            name = method if value is None else f"{method}-{sweep[0].split('.')[-1]}{value}"
            overrides = [f"algorithm.name={method}"]
            if value is not None:
                overrides.append(f"{sweep[0]}={value}")
            for seed in seeds or [None]:
                named = name if seed is None else f"{name}-seed{seed}"
                extra = [] if seed is None else [f"run.seed={seed}"]
                runs.append(
                    (named, with_overrides(config, [*overrides, f"run.name={named}", *extra]))
                )
    return runs


def run_comparison(
    config: Config,
    methods: Sequence[str],
    out_dir: Where,
    sweep: tuple[str, list[str]] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    seeds: Sequence[int] | None = None,
    parallel: bool = False,
) -> list[Where]:
    """Every run into its folder under out_dir, then comparison.parquet. The same comparison
    again in the same folder keeps the runs that finished and runs only the others."""
    if parallel and config.runtime.backend != "inprocess":
        raise ConfigError(
            "--parallel runs each run in-process inside a Ray task; set runtime.backend=inprocess"
        )
    runs = design_comparison(config, methods, sweep, seeds)
    check_tracker(config.run)
    spec = job_spec(runs)
    held = None if overwrite else held_job(out_dir, SPEC_FILE, spec, "comparison")
    if held is None:
        for name, _ in runs:
            check_run_dir(join(out_dir, name), overwrite)
    finished = held.get("finished", []) if held else []
    done = {n for n in finished if is_file(join(out_dir, n, METRICS_FILE))}
    tables = {name: _read_metrics(join(out_dir, name)) for name, _ in runs if name in done}
    todo = [(name, cfg) for name, cfg in runs if name not in done]
    with output_folder(out_dir) as local:  # for a URI, uploaded at the end
        append_provenance(
            local,
            provenance_entry(
                config.run.seed, [], "compare: " + ", ".join(name for name, _ in todo)
            ),
        )
        write_job(out_dir, SPEC_FILE, spec, [n for n, _ in runs if n in tables])
        started_ray = _connect_once(config, parallel)
        try:
            # an unfinished run's folder is this comparison's own: it starts again
            again = overwrite or held is not None
            for name, table in _results(todo, out_dir, again, progress, parallel):
                tables[name] = table
                write_job(out_dir, SPEC_FILE, spec, [n for n, _ in runs if n in tables])
        finally:
            from fslsage_ray.runtime.cluster import shutdown_private

            shutdown_private(started_ray)
        named = [
            tables[n].append_column("run", pa.array([n] * tables[n].num_rows)) for n, _ in runs
        ]
        pq.write_table(
            pa.concat_tables(named, promote_options="default"), local / "comparison.parquet"
        )
    return [join(out_dir, name) for name, _ in runs]


def _read_metrics(run_dir: Where) -> pa.Table:
    """A finished run's metrics table, from its folder (local or URI)."""
    return pq.read_table(pa.BufferReader(read_bytes(join(run_dir, METRICS_FILE))))


def _results(
    runs: Sequence[tuple[str, Config]],
    out_dir: Where,
    overwrite: bool,
    progress: bool,
    parallel: bool,
) -> Iterator[tuple[str, pa.Table]]:
    """(name, metrics table) of each run as it finishes: one after another, or as Ray tasks
    (runtime/task_pool: one CPU each, as many as the cluster holds). Every run sent as a
    task fixes its thread count first (resolve_at_start), so it learns exactly what it
    learns when run alone."""
    from fslsage_ray.simulation import Simulation, resolve_at_start

    if parallel:
        sent = [(resolve_at_start(cfg), join(out_dir, name), overwrite) for name, cfg in runs]
        for i, table in as_finished(_run_in_task, sent):
            yield runs[i][0], table
        return

    for name, cfg in runs:
        yield (
            name,
            Simulation(cfg, join(out_dir, name), overwrite=overwrite, progress=progress).run(),
        )


def track_comparison(
    config: Config, out_dir: Path, run_dirs: Sequence[Path], files: Sequence[Path]
) -> None:
    """The comparison as a tracked run of its own (each method's run was tracked as it ran):
    its figures, summary and combined table, next to the runs (same MLflow store)."""
    tracker = make_tracker(config.run, out_dir, (), store_dir=out_dir)
    if tracker is None:
        return
    params = config_to_dict(config) | {"compare": {"runs": [p.name for p in run_dirs]}}
    params["algorithm"].pop("name")  # each run has its own; the base config's says nothing
    entries = read_provenance(out_dir)
    tracker.start(out_dir.name, params, entries[-1] if entries else {})
    artifacts = [*files, out_dir / "comparison.parquet", out_dir / PROVENANCE_FILE]
    tracker.close(True, [], artifacts)


def _run_in_task(config: Config, run_dir: Where, overwrite: bool) -> pa.Table:
    """One run, in-process, inside a Ray task (its folder written as a run of its own)."""
    from fslsage_ray.simulation import Simulation

    return Simulation(config, run_dir, overwrite=overwrite, progress=False).run()


def _connect_once(config: Config, parallel: bool = False) -> bool:
    """Start Ray once for all runs instead of once per run."""
    if config.runtime.backend != "ray" and not parallel:
        return False
    from fslsage_ray.runtime.cluster import connect

    return connect(config.runtime)


__all__ = [
    "DEFAULT_METHODS",
    "parse_int_list",
    "parse_methods",
    "parse_seeds",
    "parse_sweep",
    "design_comparison",
    "run_comparison",
    "track_comparison",
]
