"""Our side of a comparison: `fslsage-ray run` as its own process, measured from outside.

The run is started the way a user starts it (the CLI, a private Ray, the config file plus
overrides), and measured the way `flower_fedavg.py` measures Flower: time from starting the
process to the end of the first round, each round's own wall time, and the peak memory of
the whole process tree. Shared by `flower_fedavg.py` and `floor.py`, with the small helpers
both print with.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from proctree import TreeRun, clean_env, psutil_module, run_tree
from workload import CONFIG, REPO

GIB = 2**30
ROUND_COLUMNS = (
    "round",
    "wall_s",
    "local_s",
    "align_s",
    "eval_s",
    "test_acc",
    "test_loss",
    "comm_bytes",
)


@dataclass
class Measured:
    """What both sides of a comparison report for one run."""

    name: str
    rounds: list[dict[str, Any]]  # per round: wall_s at least (and local_s, align_s, eval_s)
    first_round_s: float | None  # process start to the end of round 1 (index 0)
    peak_uss: int  # summed over the tree, sweeps every few seconds
    peak_rss: int  # summed over the tree, every tick
    peak_anon: int  # summed RssAnon, every tick
    peak_processes: int
    wall_s: float  # the whole process
    returncode: int
    extra: dict[str, Any] = field(default_factory=dict)

    def per_round(self) -> float:
        """Median wall time of the ordinary rounds: after the first (warm-up), without
        alignment; the first alone where it is the only one."""
        walls = [r["wall_s"] for r in self.rounds[1:] if not r.get("align_s")]
        if len(self.rounds) == 1:
            walls = [self.rounds[0]["wall_s"]]
        return statistics.median(walls) if walls else float("nan")

    def final_acc(self) -> float | None:
        return self.rounds[-1].get("test_acc") if self.rounds else None


def run_ours(
    overrides: Sequence[str],
    out_dir: Path,
    every: float = 0.2,
    uss_every: float = 5.0,
    timeout: float | None = None,
    echo: bool = False,
) -> tuple[Measured, TreeRun]:
    """One `fslsage-ray run` of configs/cifar10/fsl_sage.yaml with `overrides`."""
    import pyarrow.parquet as pq

    metrics = out_dir / "metrics.parquet"
    seen: list[float] = []

    def first_round_written() -> None:
        # The table is rewritten after every round: its first mtime is the end of round 1.
        if not seen and metrics.exists():
            try:
                seen.append(metrics.stat().st_mtime)
            except FileNotFoundError:
                pass  # replaced between the two calls

    command = [
        sys.executable,
        "-m",
        "fslsage_ray",
        "run",
        "--config",
        str(CONFIG),
        "--out",
        str(out_dir),
        "--overwrite",
        "--quiet",
        *overrides,
    ]
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = clean_env(PYTHONPATH=path)
    run = run_tree(command, env, REPO, every, uss_every, first_round_written, timeout, echo)
    rows: list[dict[str, Any]] = []
    if metrics.exists():
        table = pq.read_table(metrics)
        keep = [c for c in ROUND_COLUMNS if c in table.column_names]
        rows = table.select(keep).to_pylist()
    measured = Measured(
        name="fslsage-ray",
        rounds=rows,
        first_round_s=(seen[0] - run.start) if seen else None,
        peak_uss=run.memory.peak_uss,
        peak_rss=run.memory.peak_rss,
        peak_anon=run.memory.peak_anon,
        peak_processes=run.memory.peak_processes,
        wall_s=run.wall_s,
        returncode=run.returncode,
        extra=sampling_extra(run),
    )
    return measured, run


def sampling_extra(run: TreeRun) -> dict[str, Any]:
    m = run.memory
    return {
        "uss_complete": m.uss_complete,
        "uss_sweeps": m.uss_samples,
        "samples": m.samples,
        "sampling_cost_s": m.cost_s,
        "timeline": m.timeline,
        "at_peak_uss": m.at_peak,
    }


def largest(m: Measured, n: int = 4) -> str:
    """The processes holding the most USS at the peak, for the printed line."""
    procs = sorted(m.extra.get("at_peak_uss", []), key=lambda p: -p[3])[:n]
    return ", ".join(f"{name} {uss / GIB:.2f}" for _, name, _, uss in procs)


def median_of(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(ours: float | None, reference: float | None) -> float | None:
    if ours is None or reference is None or reference == 0:
        return None
    return ours / reference


def verdict(value: float | None, bound: float) -> str:
    if value is None:
        return "NOT MEASURED"
    return "PASS" if value <= bound else "FAIL"


def fmt(value: float | None, spec: str = ".2f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / GIB:.2f} GiB"


def machine() -> dict[str, Any]:
    psutil = psutil_module()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "memory_total_bytes": psutil.virtual_memory().total,
        "load_avg_at_start": os.getloadavg(),
    }


def stamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
