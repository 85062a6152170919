"""The per-round metrics table, rewritten atomically after every round."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fslsage_ray.algorithms.ledger import GIB, KINDS, column_name
from fslsage_ray.outputs.headline import HeadlineMetric

# Columns that measure time, not learning: excluded when comparing runs for equality.
TIMING_COLUMNS = (
    "wall_s",
    "elapsed_s",
    "local_s",
    "align_s",
    "eval_s",
    "samples_per_s",
    "client_busy_s",
    "server_busy_s",
    "server_busy_frac",
    "probe_s",  # seconds the leakage probes took (fslsage_ray/probes)
)


def learned(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every column but the timings, exactly: what must be identical across backends,
    layouts, resume and parallel runs. NaN (a round without a value) as None, so it equals
    itself."""
    return [
        {k: None if v != v else v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows
    ]


class MetricsTable:
    """Rows of one run, and the headline its task is judged by (written into the file's
    schema metadata, so readers of the run folder need no task code).
    """

    def __init__(self, headline: str = "test_acc", goal: str = "max") -> None:
        self.headline_metric = HeadlineMetric(headline, goal)  # refuses an unknown goal
        self.headline = headline
        self.goal = goal
        self.rows: list[dict[str, Any]] = []
        self.comm_bytes_cum = 0

    def add_round(self, row: Mapping[str, Any], bytes_by_kind: Mapping[str, int]) -> dict[str, Any]:
        """Append one round, adding the ledger columns (every kind, zero when unused)."""
        total = sum(bytes_by_kind.values())
        self.comm_bytes_cum += total
        full = dict(row)
        full["comm_bytes"] = total
        full["comm_bytes_cum"] = self.comm_bytes_cum
        full["comm_gib_cum"] = self.comm_bytes_cum / GIB
        for kind in KINDS:
            full[column_name(kind)] = int(bytes_by_kind.get(kind, 0))
        self.rows.append(full)
        return full

    def restore(self, rows: list[dict[str, Any]]) -> None:
        """Continue from earlier rows (a checkpoint's), dropping any later ones."""
        self.rows = [dict(r) for r in rows]
        self.comm_bytes_cum = self.rows[-1]["comm_bytes_cum"] if self.rows else 0

    def to_arrow(self) -> pa.Table:
        """Every column any row has, in the order first seen (a callback's column may start
        in a later round, e.g. after a resume; Arrow alone would keep the first row's)."""
        names = list(dict.fromkeys(k for row in self.rows for k in row))
        table = pa.Table.from_pylist([{k: row.get(k) for k in names} for row in self.rows])
        metadata = {**(table.schema.metadata or {}), **self.headline_metric.metadata()}
        return table.replace_schema_metadata(metadata)

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        pq.write_table(self.to_arrow(), tmp)
        os.replace(tmp, path)


def read_metrics(run_dir: str | Path) -> pa.Table:
    return pq.read_table(Path(run_dir) / "metrics.parquet")
