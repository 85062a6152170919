"""Comparison figures from run folders: accuracy and loss against communication (the paper's
x-axis), best accuracy against heterogeneity, and FSL-SAGE's auxiliary-model error.

Runs judged by test loss (language models) get the same figures in loss: loss against
communication with the target, and the lowest loss within a budget against heterogeneity.
Each function returns its figure, which a notebook shows inline, and writes it as a PNG when
given a path (the CLI's files). The figures never touch pyplot: no display backend is needed
on clusters or in CI, none is forced on a notebook, and a figure nobody keeps is garbage like any
object instead of living on in pyplot's registry.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from matplotlib import rcParams
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    NullLocator,
)

from fslsage_ray import registry
from fslsage_ray.outputs.headline import ACCURACY, LOSS, HeadlineMetric
from fslsage_ray.outputs.runs import (
    RunRecord,
    best_within_budget,
    common_headline,
    has_sim_time,
)
from fslsage_ray.outputs.settings import (  # noqa: E402
    Group,
    group_runs,
    mean_spread,
    setting_label,
    varying_keys,
)

FIGSIZE = (7.0, 4.5)
DPI = 120
GIB_LABEL = "cumulative communication (GiB)"
AUTHORS_GIB = "authors_comm_gib_cum"  # run.authors_ledger: their calculate_load's count
# x column -> (axis label, what the title says the metric is against); GiB by default
X_AXES = {
    "sim_time_s": ("simulated time (s)", "simulated time"),
    AUTHORS_GIB: (
        "cumulative communication (GiB, the authors' count)",
        "communication (authors' count)",
    ),
}
ACC_LABEL = "test accuracy (%)"
LOSS_LABEL = "test loss (cross-entropy)"
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")
LEGEND_INSIDE_MAX = 6


def default_target(dataset: str, headline: str = "test_acc") -> float | None:
    """The accuracy to read GiB-to-target at, where the data set's registration gives one
    (the paper's, for CIFAR; no loss defaults)."""
    return registry.accuracy_target(dataset) if headline == "test_acc" else None


def _dataset_title(records: Sequence[RunRecord]) -> str:
    """Dataset name(s), plus the client split when all runs share it (labels then omit it)."""
    names = ", ".join(dict.fromkeys(r.dataset_label for r in records)) or "no runs"
    partitions = {r.partition_label for r in records}
    return f"{names} ({partitions.pop()})" if len(partitions) == 1 else names


def _series_labels(records: Sequence[RunRecord]) -> list[str]:
    """Method labels, widened with the partition, the setting that differs between runs
    (`num_clients = 50`) and then the run name only when needed."""
    labels = [r.method_label for r in records]
    if len({r.partition_label for r in records}) > 1:
        labels = [f"{label}, {r.partition_label}" for label, r in zip(labels, records, strict=True)]
    keys = varying_keys(records)
    if keys:
        labels = [
            f"{label}, {setting_label(r, keys)}" for label, r in zip(labels, records, strict=True)
        ]
    if len(set(labels)) < len(labels):
        labels = [f"{label} [{r.name}]" for label, r in zip(labels, records, strict=True)]
    return labels


def _series(records: Sequence[RunRecord]) -> list[tuple[Group, str, dict[str, Any]]]:
    """(group, label, line style): colour per method and dash per split and setting, so a
    sweep reads as families; repeats over seeds are one series (their mean, with a band).
    """
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    groups = group_runs(records)
    methods = list(dict.fromkeys(g.method for g in groups))
    variants = list(dict.fromkeys((g.split, g.setting) for g in groups))
    several_splits = len({g.split for g in groups}) > 1
    series = []
    for group in groups:
        style: dict[str, Any] = {
            "color": colors[methods.index(group.method) % len(colors)],
            "linestyle": LINESTYLES[variants.index((group.split, group.setting)) % len(LINESTYLES)],
        }
        if len(variants) > len(LINESTYLES):  # dashes repeat: markers keep the lines apart
            style["marker"] = MARKERS[variants.index((group.split, group.setting)) % len(MARKERS)]
            style["markevery"] = max(1, min(r.rounds for r in group.records) // 8)
        parts = [group.method, group.split if several_splits else "", group.setting]
        label = ", ".join(p for p in parts if p) + (f" [{group.tag}]" if group.tag else "")
        if len(group.records) > 1:
            label += f" (mean ± sd, {len(group.records)} seeds)"
        series.append((group, label, style))
    return series


def _mean_curve(
    group: Group, y_name: str, x: str = "comm_gib_cum"
) -> tuple[list[float], list[float], list[float]]:
    """Per round (over the rounds every run of the group measured): mean x (GiB or simulated
    seconds), mean metric and its spread over the seeds (0 for a single run)."""
    per_run = [
        {row["round"]: row for row in r.metrics if _is_number(row.get(y_name))}
        for r in group.records
    ]
    rounds = sorted(set.intersection(*(set(m) for m in per_run)))
    xs, ys, sds = [], [], []
    for rnd in rounds:
        x_mean, _ = mean_spread([float(m[rnd][x]) for m in per_run])
        y, sd = mean_spread([float(m[rnd][y_name]) for m in per_run])
        xs.append(x_mean)
        ys.append(y)
        sds.append(sd)
    return xs, ys, sds


def _fmt_gib(gib: float) -> str:
    return f"{gib:.1f}" if gib >= 1 else f"{gib:.3g}"


def _fmt_pct(fraction: float) -> str:
    return f"{fraction * 100:.4g}%"


@dataclass(frozen=True)
class _Axis:
    """How one metric is drawn: accuracy as a percentage, loss as it is."""

    metric: HeadlineMetric
    ylabel: str
    scale: float
    fmt: Callable[[float], str]  # a target value as the legend quotes it
    word: str  # "accuracy": titles and file names


_ACC_AXIS = _Axis(ACCURACY, ACC_LABEL, 100.0, _fmt_pct, "accuracy")
_LOSS_AXIS = _Axis(LOSS, LOSS_LABEL, 1.0, lambda value: f"loss {value:.4g}", "loss")


def _axis_for(metric: HeadlineMetric) -> _Axis:
    if metric == ACCURACY:
        return _ACC_AXIS
    if metric == LOSS:
        return _LOSS_AXIS
    return _Axis(metric, metric.noun, 1.0, lambda v: f"{metric.short} {v:.4g}", metric.short)


def _require_records(records: Sequence[RunRecord]) -> None:
    if not records:
        raise ValueError("no runs to plot")


class PlotFigure(Figure):
    """A figure Jupyter shows as a PNG without pyplot's help (IPython asks `_repr_png_`)."""

    def __init__(self) -> None:
        super().__init__(figsize=FIGSIZE, dpi=DPI)
        FigureCanvasAgg(self)

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=DPI)
        return buffer.getvalue()


def _new_axes() -> tuple[Figure, Axes]:
    fig = PlotFigure()
    return fig, fig.add_subplot()


def _finish(
    fig: Figure, ax: Axes, out_path: str | Path | None, inside_max: int = LEGEND_INSIDE_MAX
) -> Figure:
    """Grid, legend and layout; then the PNG, when a path is given."""
    ax.grid(True, which="major", alpha=0.35)
    handles, _ = ax.get_legend_handles_labels()
    if len(handles) > inside_max:
        # A long legend would hide the curves: move it to the right and widen the figure.
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.set_size_inches(FIGSIZE[0] + 3.0, FIGSIZE[1])
    else:
        ax.legend(fontsize="small", framealpha=0.9)
    fig.tight_layout()
    if out_path is not None:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out_path, dpi=DPI)
    return fig


def _has_column(record: RunRecord, column: str) -> bool:
    return bool(record.metrics) and all(_is_number(row.get(column)) for row in record.metrics)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def _plot_vs_gib(
    records: Sequence[RunRecord],
    out_path: str | Path | None,
    axis: _Axis,
    target: float | None,
    x: str = "comm_gib_cum",
) -> Figure:
    """One metric against traffic (or simulated time, x="sim_time_s", or the authors' byte
    count, x="authors_comm_gib_cum"); with a target each run's first crossing is marked and
    its GiB (seconds) quoted in the legend, which is the paper's headline number.
    """
    _require_records(records)
    fig, ax = _new_axes()
    timed = x == "sim_time_s"
    for group, label, style in _series(records):
        xs, means, sds = _mean_curve(group, axis.metric.column, x)
        crossing = None
        if target is not None:  # of the mean curve: a single run's own first crossing
            reached = (i for i, y in enumerate(means) if axis.metric.reaches(y, target))
            first = next(reached, None)
            crossing = None if first is None else (xs[first], means[first])
            where = (
                ""
                if crossing is None
                else (f"{crossing[0]:.1f} s" if timed else f"{_fmt_gib(crossing[0])} GiB")
            )
            note = f"at {where}" if crossing is not None else "not reached"
            label = f"{label} ({axis.fmt(target)} {note})"
        ys = [y * axis.scale for y in means]
        if len(xs) == 1:  # a one-round run: a line of one point would not show
            style = {"marker": "o", **style}
        ax.plot(xs, ys, label=label, linewidth=1.6, **style)
        if len(group.records) > 1:
            spread = [sd * axis.scale for sd in sds]
            low = [y - sd for y, sd in zip(ys, spread, strict=True)]
            high = [y + sd for y, sd in zip(ys, spread, strict=True)]
            ax.fill_between(xs, low, high, color=style["color"], alpha=0.2, linewidth=0)
        if crossing is not None:
            ax.plot(
                [crossing[0]],
                [crossing[1] * axis.scale],
                marker="o",
                markersize=7,
                color=style["color"],
                markeredgecolor="black",
                zorder=3,
            )
    if target is not None:
        ax.axhline(
            target * axis.scale,
            color="dimgray",
            linestyle="--",
            linewidth=1,
            label=f"target {axis.fmt(target)}",
        )
    xlabel, versus = X_AXES.get(x, (GIB_LABEL, "communication"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(axis.ylabel)
    ax.set_xlim(left=0)
    ax.set_title(f"{_dataset_title(records)}: {axis.metric.noun} vs {versus}")
    return _finish(fig, ax, out_path)


def plot_accuracy_vs_gib(
    records: Sequence[RunRecord], out_path: str | Path | None = None, target: float | None = None
) -> Figure:
    """Test accuracy against traffic; the target is a fraction (e.g. 0.81)."""
    return _plot_vs_gib(records, out_path, _ACC_AXIS, target)


def plot_loss_vs_gib(
    records: Sequence[RunRecord], out_path: str | Path | None = None, target: float | None = None
) -> Figure:
    """Test loss against traffic: shows divergence or overfitting that accuracy can hide, and
    is the main figure of runs judged by loss (then with a target loss, reached at or below).
    """
    return _plot_vs_gib(records, out_path, _LOSS_AXIS, target)


def plot_headline_vs_gib(
    records: Sequence[RunRecord], out_path: str | Path | None = None, target: float | None = None
) -> Figure:
    """The runs' shared headline (accuracy or loss) against traffic, target in its units."""
    _require_records(records)
    return _plot_vs_gib(records, out_path, _axis_for(common_headline(records)), target)


def plot_best_vs_alpha(
    records: Sequence[RunRecord],
    out_path: str | Path | None = None,
    budgets: Sequence[float] = (50, 80),
) -> Figure:
    """Best headline (highest accuracy, lowest loss) within each GiB budget against Dirichlet
    alpha, one line per (method, budget); runs repeated at one alpha (seeds) are averaged.
    """
    swept = [r for r in records if r.alpha is not None]
    if not swept:
        raise ValueError(
            "no run has a Dirichlet alpha (data.partition must be 'dirichlet'); "
            "nothing to plot against alpha"
        )
    axis = _axis_for(common_headline(swept))
    # (method, budget) -> alpha -> best values from each run at that alpha
    points: dict[tuple[str, float], dict[float, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    # Where every run stopped short of the budget, the budget did not bind: say so.
    short: dict[tuple[str, float], bool] = {}
    for record in swept:
        spent = max(record.column("comm_gib_cum"), default=0.0)
        for budget in budgets:
            best = best_within_budget(record, budget)
            if best is not None:
                key = (record.method_label, budget)
                points[key][record.alpha].append(best)
                short[key] = short.get(key, True) and spent < budget
    if not points:
        raise ValueError(
            f"no Dirichlet run has a round within the budgets {list(budgets)} GiB; "
            "nothing to plot against alpha"
        )

    fig, ax = _new_axes()
    methods = list(dict.fromkeys(method for method, _ in points))
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    for (method, budget), by_alpha in points.items():
        m, b = methods.index(method), list(budgets).index(budget)
        alphas = sorted(by_alpha)
        note = " (runs end below budget)" if short[(method, budget)] else ""
        ax.plot(
            alphas,
            [mean(by_alpha[a]) * axis.scale for a in alphas],
            color=colors[m % len(colors)],
            linestyle=LINESTYLES[b % len(LINESTYLES)],
            marker=MARKERS[b % len(MARKERS)],
            label=f"{method}, ≤ {budget:g} GiB{note}",
        )
    all_alphas = sorted({r.alpha for r in swept})
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(all_alphas))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_xlabel("Dirichlet α (log scale; smaller = more heterogeneous clients)")
    which = "best" if axis.metric.goal == "max" else "lowest"
    unit = " (%)" if axis.metric.is_accuracy else ""
    ax.set_ylabel(f"{which} {axis.metric.noun} within budget{unit}")
    ax.set_title(f"{_dataset_title(swept)}: {which} {axis.word} within a GiB budget vs α")
    # Lines span the whole x range, so an inside legend would always cover points.
    return _finish(fig, ax, out_path, inside_max=0)


# The name from before runs had a headline; it draws whichever headline the runs share.
plot_best_accuracy_vs_alpha = plot_best_vs_alpha


def _has_am_error(record: RunRecord) -> bool:
    columns = record.column("am_rel_error_before") + record.column("am_rel_error_after")
    return any(_is_number(v) for v in columns)


def _readable_log_y(ax: Axes) -> None:
    """Log y with plain-number labels, and more of them when the data span under a decade."""
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    subs = (1.0, 2.0, 5.0) if high / low > 10 else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    ax.yaxis.set_major_locator(LogLocator(subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def plot_am_error(records: Sequence[RunRecord], out_path: str | Path | None = None) -> Figure:
    """How far the auxiliary models' gradient estimates are from the server's, before and
    after each alignment: the quantity FSL-SAGE's convergence argument rests on.
    """
    runs = [r for r in records if _has_am_error(r)]
    if not runs:
        raise ValueError(
            "no run has auxiliary-model error data (am_rel_error_before/after); "
            "only FSL-SAGE runs with at least one alignment round record it"
        )
    fig, ax = _new_axes()
    for record, label in zip(runs, _series_labels(runs), strict=True):
        color = None
        for column, style, marker, when in (
            ("am_rel_error_before", "--", "o", "before"),
            ("am_rel_error_after", "-", "s", "after"),
        ):
            pts = [
                (row["round"], row[column])
                for row in record.metrics
                if _is_number(row.get(column)) and row[column] > 0
            ]
            (line,) = ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                linestyle=style,
                marker=marker,
                color=color,
                label=f"{label}, {when} alignment",
                markersize=5,
            )
            color = line.get_color()
    _readable_log_y(ax)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("AM relative error ‖ĝ − g*‖² / ‖g*‖² (log)")
    ax.set_title(f"{_dataset_title(runs)}: auxiliary-model estimation error at alignments")
    return _finish(fig, ax, out_path)


def plot_all(
    records: Sequence[RunRecord],
    out_dir: str | Path,
    target: float | None = None,
    budgets: Sequence[float] = (50, 80),
) -> list[Path]:
    """Every figure that applies to the runs' shared headline (runs judged by accuracy and by
    loss are refused together); the target is in the headline's units and, for accuracy,
    defaults to the dataset's when all runs share one.
    """
    _require_records(records)
    metric = common_headline(records)
    out_dir = Path(out_dir)
    datasets = {r.dataset for r in records}
    if target is None and len(datasets) == 1:
        target = default_target(next(iter(datasets)), metric.column)
    axis = _axis_for(metric)
    draws: list[tuple[str, Callable[[Path], Figure]]] = []
    if metric == ACCURACY:
        draws.append(("accuracy_vs_gib", lambda p: plot_accuracy_vs_gib(records, p, target)))
        draws.append(("loss_vs_gib", lambda p: plot_loss_vs_gib(records, p)))
    else:
        draws.append((f"{axis.word}_vs_gib", lambda p: _plot_vs_gib(records, p, axis, target)))
    if all(has_sim_time(r) for r in records):  # beside the GiB figure: the same vs time
        draws.append(
            (f"{axis.word}_vs_time", lambda p: _plot_vs_gib(records, p, axis, target, "sim_time_s"))
        )
    if all(_has_column(r, AUTHORS_GIB) for r in records):  # run.authors_ledger: their x
        draws.append(
            (
                f"{axis.word}_vs_authors_gib",
                lambda p: _plot_vs_gib(records, p, axis, target, AUTHORS_GIB),
            )
        )
    if any(_has_am_error(r) for r in records):
        draws.append(("am_error", lambda p: plot_am_error(records, p)))
    if len({r.alpha for r in records if r.alpha is not None}) >= 2:
        draws.append(
            (f"best_{axis.word}_vs_alpha", lambda p: plot_best_vs_alpha(records, p, budgets))
        )
    paths = []
    for name, draw in draws:
        paths.append(out_dir / f"{name}.png")
        draw(paths[-1]).clear()  # written; nothing keeps the figure
    return paths
