"""Memory against clients with every client in every round: streamed participants against
the in-memory path (issue 29, item 4), from scaling-study tables already measured.

A study's own figure (`fslsage-ray plot` of a study) draws one line per method; this one puts
studies side by side: each `--streamed` / `--in-memory` table adds its runs' peak session
memory (summed USS of the whole Ray session) to that mode's line per method, `--point` adds
a figure measured outside a study table (a run stopped by a watchdog, say), drawn hollow with
its note, and each in-memory line is extended linearly (dashed) from its last two measured
points to the largest client count shown, the extrapolation RESULTS.md quotes.

    python benchmarks/plot_stream_memory.py \
        --streamed docs/results/scale-c10-stream/scaling.parquet \
                   docs/results/scale-c10-stream/all-10k/scaling.parquet \
        --in-memory docs/results/scale-c10-all/scaling.parquet \
        --point "in-memory:fsl_sage:3000:12.51:stopped above 11.5 GiB" \
        --out docs/figures/scale-c10-stream/memory_vs_clients.png

Prints the figure's points as a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

GIB = 2**30
TARGET_GIB = 16.0
MODES = ("streamed", "in-memory")
LABELS = {"fsl_sage": "FSL-SAGE", "sflv1": "SplitFed-MS"}


@dataclass(frozen=True)
class Point:
    mode: str
    method: str
    clients: int
    gib: float
    note: str = ""  # set: not from a finished study run (drawn hollow, annotated)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streamed", nargs="*", type=Path, default=[])
    parser.add_argument("--in-memory", nargs="*", type=Path, default=[])
    parser.add_argument(
        "--point",
        action="append",
        default=[],
        help="MODE:METHOD:CLIENTS:GIB:NOTE, a figure measured outside a study table",
    )
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def table_points(mode: str, path: Path) -> list[Point]:
    import pyarrow.parquet as pq

    return [
        Point(mode, r["method"], r["clients"], r["peak_memory_bytes"] / GIB)
        for r in pq.read_table(path).to_pylist()
    ]


def parse_point(text: str) -> Point:
    mode, method, clients, gib, note = text.split(":", 4)
    if mode not in MODES:
        raise SystemExit(f"--point {text!r}: mode must be one of {', '.join(MODES)}")
    return Point(mode, method, int(clients), float(gib), note or "measured outside a study")


def extrapolate(points: Sequence[Point], to_clients: int) -> tuple[int, float, int, float]:
    """The line through the last two measured points, to to_clients: (x0, y0, x1, y1)."""
    (a, b) = sorted(points, key=lambda p: p.clients)[-2:]
    slope = (b.gib - a.gib) / (b.clients - a.clients)
    return b.clients, b.gib, to_clients, b.gib + slope * (to_clients - b.clients)


def plot(points: Sequence[Point], out: Path) -> list[str]:
    """Draw the figure; returns the extrapolations as sentences."""
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.6))
    colors = {"fsl_sage": "C0", "sflv1": "C1"}
    lines: dict[tuple[str, str], list[Point]] = defaultdict(list)
    for p in points:
        lines[(p.mode, p.method)].append(p)
    top = max(p.clients for p in points)
    notes = []
    for (mode, method), group in sorted(lines.items()):
        group.sort(key=lambda p: p.clients)
        color = colors.get(method, "C2")
        style = "-" if mode == "streamed" else "--"
        marker = "o" if mode == "streamed" else "s"
        measured = [p for p in group if not p.note]
        name = f"{LABELS.get(method, method)}, {mode}"
        ax.plot(
            [p.clients for p in measured],
            [p.gib for p in measured],
            style,
            marker=marker,
            color=color,
            label=name,
        )
        for p in group:
            if p.note:
                ax.plot(p.clients, p.gib, marker, mfc="none", color=color, ms=9)
                right = p.clients == top  # at the right edge: the note goes to its left
                ax.annotate(
                    p.note,
                    (p.clients, p.gib),
                    xytext=(-8 if right else 8, -14),
                    textcoords="offset points",
                    ha="right" if right else "left",
                    fontsize=7,
                    color=color,
                )
        if mode == "in-memory" and len(measured) >= 2 and top > measured[-1].clients:
            x0, y0, x1, y1 = extrapolate(measured, top)
            xs = [x0 + (x1 - x0) * k / 50 for k in range(51)]  # straight in clients, not log
            ys = [y0 + (y1 - y0) * (x - x0) / (x1 - x0) for x in xs]
            ax.plot(xs, ys, ":", color=color, label=f"{name}, extrapolated")
            ax.annotate(
                f"{y1:.0f} GiB (extrapolated)",
                (x1, y1),
                xytext=(-110, -4),
                textcoords="offset points",
                fontsize=8,
                color=color,
            )
            notes.append(f"{name}: {y1:.1f} GiB at {x1:,} clients, extrapolated")
    ax.axhline(TARGET_GIB, color="grey", lw=0.8, ls="--")
    ax.annotate(
        "target 16 GiB",
        (min(p.clients for p in points), TARGET_GIB),
        xytext=(0, 4),
        textcoords="offset points",
        fontsize=8,
        color="grey",
    )
    counts = sorted({p.clients for p in points})
    ax.set_xscale("log")
    ax.set_xticks(counts, [f"{c:,}" for c in counts])
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.set(
        xlabel="clients, every one in every round (log scale)",
        ylabel="peak memory of the Ray session, summed USS (GiB)",
        title="Memory against clients: participants streamed vs held in memory",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return notes


def markdown(points: Sequence[Point]) -> str:
    cols = sorted({(p.method, p.mode) for p in points}, key=lambda k: (k[0], MODES.index(k[1])))
    counts = sorted({p.clients for p in points})
    cell = {(p.method, p.mode, p.clients): p for p in points}
    head = [f"{LABELS.get(m, m)} {mode}" for m, mode in cols]
    lines = ["| clients | " + " | ".join(head) + " |", "|---" * (len(cols) + 1) + "|"]
    for n in counts:
        row = []
        for method, mode in cols:
            p = cell.get((method, mode, n))
            row.append("" if p is None else f"{p.gib:.2f}" + (f" ({p.note})" if p.note else ""))
        lines.append(f"| {n:,} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    points = [p for path in args.streamed for p in table_points("streamed", path)]
    points += [p for path in args.in_memory for p in table_points("in-memory", path)]
    points += [parse_point(text) for text in args.point]
    if not points:
        print("nothing to plot: give --streamed / --in-memory tables or --point", file=sys.stderr)
        return 2
    notes = plot(points, args.out)
    print(markdown(points))
    for note in notes:
        print(note)
    print(f"figure: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
