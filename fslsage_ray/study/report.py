"""A scaling study's summary and figures, from its table alone (`plot` redraws them).

Per method and client count: the mean over seeds with its spread (sample standard deviation);
figures draw the mean with a band, one line per method: seconds per round and session memory
against clients (log-log), and the headline metric against clients.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fslsage_ray import registry
from fslsage_ray.outputs.headline import HeadlineMetric
from fslsage_ray.outputs.settings import mean_spread

if TYPE_CHECKING:  # matplotlib loads only when a figure is drawn
    from matplotlib.figure import Figure

GIB = 2**30

# (column, header, scale, digits): the summary's numeric columns, in order
COLUMNS = (
    ("s_per_round", "s/round", 1.0, 3),
    ("first_round_s", "s to first round", 1.0, 1),
    ("peak_memory_bytes", "session GiB", 1 / GIB, 2),
    ("peak_store_bytes", "store GiB", 1 / GIB, 3),
    ("server_busy_frac", "server busy", 1.0, 2),
    ("gib_per_round", "GiB/round", 1.0, 4),
)

PARALLEL_NOTE = (
    "parallel: runs measured while other runs shared the machine (`scale --parallel`); their "
    "seconds and memory (the run's own process) are not comparable with runs one after "
    "another, their learning is the same."
)


def label(method: str) -> str:
    return registry.method_label(method)


def grouped(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """(method, clients) -> that setting's rows (one per seed), in the table's order."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["method"], row["clients"])].append(row)
    return groups


def _cell(values: Sequence[float | None], scale: float, digits: int, several: bool) -> str:
    mean, sd = mean_spread([v for v in values if v is not None and v == v])  # NaN: not measured
    if mean is None:
        return "n/a"
    text = f"{mean * scale:.{digits}f}"
    return f"{text} ± {sd * scale:.{digits}f}" if several else text


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """One line per method and client count; `mean ± sd` where there are several seeds."""
    if not rows:
        return "(no finished runs)"
    metric = HeadlineMetric(rows[0]["headline"], rows[0]["goal"])
    pct = 100.0 if metric.is_accuracy else 1.0
    unit = " (%)" if metric.is_accuracy else ""
    header = ["method", "clients", "seeds", *(h for _, h, _, _ in COLUMNS), "actors × clients"]
    header.append("parallel")
    header += [f"final {metric.short}{unit}", f"best {metric.short}{unit}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (method, clients), runs in grouped(rows).items():
        several = len(runs) > 1
        cells = [label(method), str(clients), str(len(runs))]
        cells += [_cell([r[c] for r in runs], s, d, several) for c, _, s, d in COLUMNS]
        layout = {(r["client_actors"], r["clients_per_actor"]) for r in runs}
        cells.append(
            ", ".join("in-process" if a == 0 else f"{a} × ≤{n}" for a, n in sorted(layout))
        )
        cells.append(_parallel_cell(runs))
        cells += [_cell([r[c] for r in runs], pct, 2, several) for c in ("final", "best")]
        lines.append("| " + " | ".join(cells) + " |")
    if any(r.get("parallel") for r in rows):
        lines += ["", PARALLEL_NOTE]
    return "\n".join(lines)


def _parallel_cell(runs: Sequence[dict[str, Any]]) -> str:
    """yes / no / mixed (seeds of one setting measured both ways, e.g. after a resume)."""
    flags = {bool(r.get("parallel")) for r in runs}
    return "mixed" if len(flags) > 1 else "yes" if flags == {True} else "no"


def _plot_vs_clients(
    rows: Sequence[dict[str, Any]],
    column: str,
    scale: float,
    ylabel: str,
    title: str,
    log_y: bool,
) -> Figure:
    from fslsage_ray.outputs import plots

    fig, ax = plots._new_axes()  # noqa: SLF001  (the package's figure conventions)
    colors = plots.rcParams["axes.prop_cycle"].by_key()["color"]
    by_method: dict[str, list[tuple[int, list[dict[str, Any]]]]] = defaultdict(list)
    for (method, clients), runs in grouped(rows).items():
        by_method[method].append((clients, runs))
    for i, (method, points) in enumerate(by_method.items()):
        points.sort()
        xs, ys, sds, seeds = [], [], [], 1
        for clients, runs in points:
            mean, sd = mean_spread([r[column] for r in runs if r[column] == r[column]])
            if mean is None:
                continue
            xs.append(clients)
            ys.append(mean * scale)
            sds.append(sd * scale)
            seeds = max(seeds, len(runs))
        color = colors[i % len(colors)]
        note = f" (mean ± sd, {seeds} seeds)" if seeds > 1 else ""
        ax.plot(xs, ys, marker="o", color=color, label=label(method) + note)
        if seeds > 1:
            low = [max(y - s, y * 1e-3) if log_y else y - s for y, s in zip(ys, sds, strict=True)]
            high = [y + s for y, s in zip(ys, sds, strict=True)]
            ax.fill_between(xs, low, high, color=color, alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    if log_y:
        plots._readable_log_y(ax)  # noqa: SLF001
    counts = sorted({r["clients"] for r in rows})
    ax.xaxis.set_major_locator(plots.FixedLocator(counts))
    ax.xaxis.set_minor_locator(plots.NullLocator())
    ax.xaxis.set_major_formatter(plots.FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.set_xlabel("clients (log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return plots._finish(fig, ax, None)  # noqa: SLF001


def study_figures(rows: Sequence[dict[str, Any]]) -> dict[str, Figure]:
    """The three figures of a study by file stem (shown inline in a notebook)."""
    if not rows:
        raise ValueError("no finished runs in the study to plot")
    metric = HeadlineMetric(rows[0]["headline"], rows[0]["goal"])
    pct = 100.0 if metric.is_accuracy else 1.0
    word = "accuracy" if metric.is_accuracy else metric.short
    return {
        "time_vs_clients": _plot_vs_clients(
            rows,
            "s_per_round",
            1.0,
            "median seconds per round (log)",
            "time per round vs clients",
            log_y=True,
        ),
        "memory_vs_clients": _plot_vs_clients(
            rows,
            "peak_memory_bytes",
            1 / GIB,
            "peak session memory, summed USS (GiB, log)",
            "memory vs clients",
            log_y=True,
        ),
        f"{word}_vs_clients": _plot_vs_clients(
            rows,
            "final",
            pct,
            f"final {metric.noun}{' (%)' if metric.is_accuracy else ''}",
            f"{metric.noun} vs clients",
            log_y=False,
        ),
    }


def plot_study(rows: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """The three figures of a study as PNGs in out_dir; returns their paths."""
    from fslsage_ray.outputs.plots import DPI

    paths = []
    for stem, fig in study_figures(rows).items():
        paths.append(out_dir / f"{stem}.png")
        fig.savefig(paths[-1], dpi=DPI)
        fig.clear()  # written; nothing keeps the figure
    return paths


def write_report(rows: Sequence[dict[str, Any]], out_dir: Path) -> tuple[str, list[Path]]:
    """summary.md and the figures into out_dir; returns the table text and the figures."""
    text = to_markdown(rows)
    (out_dir / "summary.md").write_text(text + "\n")
    return text, plot_study(rows, out_dir)
