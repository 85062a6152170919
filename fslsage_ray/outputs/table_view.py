"""The metrics table as a notebook shows it: a pandas DataFrame (Jupyter draws an HTML table)
when pandas is installed, else a compact text view; pandas stays optional."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

DEFAULT_COLUMNS = ("round", "test_acc", "test_loss", "comm_gib_cum", "wall_s")


class TextTable:
    """Aligned columns, numbers to a few significant digits: what `repr` prints."""

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.columns = list(columns)
        self.rows = [list(r) for r in rows]

    def __repr__(self) -> str:
        cells = [self.columns, *([_cell(v) for v in row] for row in self.rows)]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = ("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells)
        return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def table_view(table: pa.Table, columns: Sequence[str] | None = None) -> Any:
    """The chosen columns; by default round, test metrics, GiB and seconds where the table
    has them (a metrics table), else all (a summary)."""
    if columns is None:
        columns = [c for c in DEFAULT_COLUMNS if c in table.column_names] or table.column_names
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"no column(s) {missing} in the table; it has {table.column_names}")
    chosen = table.select(list(columns))
    try:
        import pandas  # noqa: F401
    except ImportError:
        return TextTable(chosen.column_names, [list(r.values()) for r in chosen.to_pylist()])
    return chosen.to_pandas()
