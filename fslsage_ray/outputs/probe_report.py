"""What the leakage probes measured, drawn and tabulated beside a comparison's accuracy
figures: one figure per probe column, against cumulative GiB (what a method pays) and
against rounds (how leakage grows with training), one line per method, and a table of each
run's values at its last probe round.

A probe that cannot apply to a method writes NaN (FedAvg has no cut: no distance
correlation, nothing to reconstruct; SplitFed gives clients no AM to steal). Here NaN stays
"n/a": the method is named in the legend without a line and gets "n/a" in the table, never
a 0 that would read as measured. Torch-free: the column names are spelled here rather than
read from fslsage_ray.probes (a higher layer that imports torch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fslsage_ray.outputs import plots
from fslsage_ray.outputs.headline import is_number
from fslsage_ray.outputs.plots import (
    GIB_LABEL,
    _dataset_title,
    _mean_curve,
    _new_axes,
    _require_records,
    _series,
)
from fslsage_ray.outputs.runs import RunRecord
from fslsage_ray.outputs.settings import Group, group_runs, mean_spread

PROBE_TABLE_TITLE = "Leakage probes at each run's last probe round (n/a: cannot apply)"
X_AXES = {"comm_gib_cum": ("gib", GIB_LABEL), "round": ("round", "round")}


@dataclass(frozen=True)
class ProbeView:
    """How one probe column is drawn and tabulated."""

    column: str
    label: str  # y axis
    header: str  # table header
    scale: float  # drawn and tabulated as value * scale (fractions as percentages)
    fmt: Callable[[float], str]  # a table cell
    reference: str | None = None  # a column drawn dotted beside it, per method
    reference_label: str = ""
    baseline: str | None = None  # a column drawn as one grey line: the bar an attack must clear
    baseline_label: str = ""
    drawn: bool = True  # False: the table only (exact counts, and the attack baselines)


def _pct(value: float) -> str:
    return f"{value:.1f}%"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _fixed(digits: int) -> Callable[[float], str]:
    return lambda value: f"{value:.{digits}f}"


# Order = the table's column order; only columns some run measured are drawn or listed.
VIEWS = (
    ProbeView("dcor", "distance correlation (bias-corrected)", "dcor", 1.0, _fixed(3)),
    ProbeView(
        "steal_acc",
        "stolen model's test accuracy (%)",
        "steal acc",
        100.0,
        _pct,
        reference="test_acc",
        reference_label="full split model",
    ),
    ProbeView("steal_loss", "stolen model's test loss", "steal loss", 1.0, _fixed(3)),
    ProbeView(
        "recon_psnr_db",
        "reconstruction PSNR (dB)",
        "PSNR dB",
        1.0,
        _fixed(1),
        baseline="recon_mean_psnr_db",
        baseline_label="predicting the mean image",
    ),
    ProbeView("recon_mean_psnr_db", "", "mean-image PSNR dB", 1.0, _fixed(1), drawn=False),
    ProbeView("recon_ssim", "reconstruction SSIM", "SSIM", 1.0, _fixed(3)),
    ProbeView(
        "recon_token_rate",
        "tokens recovered (%)",
        "tokens recovered",
        100.0,
        _pct,
        baseline="recon_token_baseline",
        baseline_label="most frequent token",
    ),
    ProbeView("recon_token_baseline", "", "most-frequent-token rate", 100.0, _pct, drawn=False),
    ProbeView("exposed_examples_cum", "", "examples exposed", 1.0, _count, drawn=False),
    ProbeView("grad_messages_cum", "", "grads received", 1.0, _count, drawn=False),
)


def _shown(records: Sequence[RunRecord]) -> list[ProbeView]:
    """The views of the columns some run wrote; the stolen model's loss only where there
    is no accuracy (language models), since for classifiers accuracy says it."""
    views = [v for v in VIEWS if has_column(records, v.column)]
    if any(v.column == "steal_acc" for v in views):
        views = [v for v in views if v.column != "steal_loss"]
    return views


def _probe_rows(record: RunRecord, column: str) -> list[dict[str, Any]]:
    """The rows of probe rounds that carry this column (measured, or NaN for n/a)."""
    return [row for row in _probe_rounds(record) if row.get(column) is not None]


def _probe_rounds(record: RunRecord) -> list[dict[str, Any]]:
    """The probe rounds: those with the probes' cost (`probe_s`); the simulator writes NaN
    in every probe column on the other rounds, so NaN alone does not tell them apart."""
    return [row for row in record.metrics if is_number(row.get("probe_s"))]


def has_column(records: Sequence[RunRecord], column: str) -> bool:
    """Some run wrote the column on a probe round (a number, or NaN for n/a)."""
    return any(_probe_rows(r, column) for r in records)


def _measured(record: RunRecord, column: str) -> bool:
    return any(is_number(row[column]) for row in _probe_rows(record, column))


def plot_probe(
    records: Sequence[RunRecord],
    view: ProbeView,
    x: str = "comm_gib_cum",
    out_path: str | Path | None = None,
) -> Figure:
    """One probe column against cumulative GiB (x="comm_gib_cum") or rounds (x="round"),
    one line per method (mean over seeds); a method whose column is NaN is named "n/a" in
    the legend without a line."""
    _require_records(records)
    if not has_column(records, view.column):
        raise ValueError(f"no run has the probe column {view.column!r}")
    fig, ax = _new_axes()
    for group, label, style in _series(records):
        if not all(_measured(r, view.column) for r in group.records):
            ax.plot([], [], label=f"{label}: n/a", **style)
            continue
        xs, ys, sds = _mean_curve(group, view.column, x)
        ys = [y * view.scale for y in ys]
        ax.plot(xs, ys, label=label, linewidth=1.6, **{"marker": "o", **style})
        if len(group.records) > 1:
            low = [y - sd * view.scale for y, sd in zip(ys, sds, strict=True)]
            high = [y + sd * view.scale for y, sd in zip(ys, sds, strict=True)]
            ax.fill_between(xs, low, high, color=style["color"], alpha=0.2, linewidth=0)
        if view.reference is not None:
            ref_x, ref_y = _reference_curve(group, view, x)
            ax.plot(
                ref_x,
                [y * view.scale for y in ref_y],
                color=style["color"],
                linestyle=":",
                linewidth=1.2,
                label=f"{label}, {view.reference_label}",
            )
    if view.baseline is not None:
        values = [
            float(row[view.baseline])
            for r in records
            for row in r.metrics
            if is_number(row.get(view.baseline))
        ]
        if values:
            level = mean(values) * view.scale
            ax.axhline(
                level,
                color="dimgray",
                linestyle="--",
                linewidth=1,
                label=f"{view.baseline_label} ({view.fmt(level / view.scale)})",
            )
    key, xlabel = X_AXES[x]
    ax.set_xlabel(xlabel)
    if key == "round":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.set_xlim(left=0)
    ax.set_ylabel(view.label)
    versus = "communication" if key == "gib" else "rounds"
    ax.set_title(f"{_dataset_title(records)}: {view.header} vs {versus}")
    return plots._finish(fig, ax, out_path)  # through the module: tests watch legends


def _reference_curve(group: Group, view: ProbeView, x: str) -> tuple[list[float], list[float]]:
    """The reference column (e.g. the full model's accuracy) at the probe rounds only, so
    both lines share their x values; the mean over the group's runs."""
    assert view.reference is not None
    per_run = [
        {
            row["round"]: row
            for row in r.metrics
            if is_number(row.get(view.column)) and is_number(row.get(view.reference))
        }
        for r in group.records
    ]
    rounds = sorted(set.intersection(*(set(m) for m in per_run)))
    xs = [mean(float(m[rnd][x]) for m in per_run) for rnd in rounds]
    ys = [mean(float(m[rnd][view.reference]) for m in per_run) for rnd in rounds]
    return xs, ys


def plot_probes(records: Sequence[RunRecord], out_dir: str | Path) -> list[Path]:
    """Every leakage figure the runs have data for: <column>_vs_gib.png and
    <column>_vs_round.png; none (an empty list) for runs without probes."""
    out_dir = Path(out_dir)
    paths = []
    for view in _shown(records):
        if not view.drawn:
            continue
        for x, (key, _) in X_AXES.items():
            path = out_dir / f"{view.column}_vs_{key}.png"
            plot_probe(records, view, x, path).clear()  # written; nothing keeps the figure
            paths.append(path)
    return paths


def _last_probe_row(record: RunRecord) -> dict[str, Any] | None:
    rows = _probe_rounds(record)
    return rows[-1] if rows else None


def _cell(
    rows: Sequence[dict[str, Any]], column: str, fmt: Callable[[float], str], scale: float
) -> str:
    """The mean over the seeds' rows; "n/a" unless every run measured it (NaN is not 0)."""
    values = [row.get(column) for row in rows]
    if not all(is_number(v) for v in values):
        return "n/a"
    return fmt(mean_spread([float(v) for v in values])[0] * scale)


def probe_table(records: Sequence[RunRecord]) -> str | None:
    """Markdown: per method (mean over seeds), the probe columns at each run's last probe
    round, beside its accuracy and GiB there; None when no run has probe columns."""
    views = _shown(records)
    if not views:
        return None
    header = ["method", "round", "test acc", "GiB"]
    header += [v.header for v in views]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in group_runs(records):
        last = [_last_probe_row(r) for r in group.records]
        if None in last:
            continue
        rows = [row for row in last if row is not None]

        name = f"{group.method} [{group.tag}]" if group.tag else group.method
        if group.setting:
            name += f", {group.setting}"
        cells = [
            name,
            str(rows[0]["round"]),
            _cell(rows, "test_acc", _pct, 100.0),
            _cell(rows, "comm_gib_cum", lambda v: f"{v:.3f}", 1.0),
        ]
        cells += [_cell(rows, v.column, v.fmt, v.scale) for v in views]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
