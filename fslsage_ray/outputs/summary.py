"""One line per run: what a reader of a comparison wants first (GiB to target, then the final
and best headline: accuracy for classifiers, loss for language models).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fslsage_ray.outputs.headline import HeadlineMetric
from fslsage_ray.outputs.runs import (
    RunRecord,
    best_within_budget,
    common_headline,
    gib_to_target,
    has_sim_time,
    time_to_target,
)


def summarize(records: Sequence[RunRecord], target: float | None) -> list[dict[str, Any]]:
    """Rows keyed final_<short>/best_<short> (final_acc, best_loss, ...); the target is in the
    headline's units. Runs with different headlines are refused (ValueError).
    """
    metric = common_headline(records)
    rows = []
    for r in records:
        gib = r.column("comm_gib_cum")
        row: dict[str, Any] = {
            "method": r.method_label,
            "split": r.partition_label,
            "rounds": r.rounds,
            "headline": metric.column,
            "goal": metric.goal,
            f"final_{metric.short}": r.final_headline,
            f"best_{metric.short}": r.best_headline,
            "gib_total": gib[-1] if gib else 0.0,
        }
        if target is not None:
            row["gib_to_target"] = gib_to_target(r, target)
        if all(has_sim_time(x) for x in records):  # simulated time (system section)
            row["sim_s_total"] = r.metrics[-1]["sim_time_s"]
            if target is not None:
                row["sim_s_to_target"] = time_to_target(r, target)
        rows.append(row)
    return rows


def best_within(records: Sequence[RunRecord], budget_gib: float) -> dict[str, float | None]:
    return {r.method_label: best_within_budget(r, budget_gib) for r in records}


def _fmt_value(metric: HeadlineMetric, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2%}" if metric.is_accuracy else f"{value:.4f}"


def target_label(metric: HeadlineMetric, target: float) -> str:
    """How a target is quoted in headers and legends: 81% for accuracy, loss 2.5 for loss."""
    return f"{target:.0%}" if metric.is_accuracy else f"{metric.short} {target:g}"


def to_markdown(rows: Sequence[dict[str, Any]], target: float | None) -> str:
    first = rows[0] if rows else {}
    metric = HeadlineMetric(first.get("headline", "test_acc"), first.get("goal", "max"))
    short = metric.short
    header = ["method", "split", "rounds", f"final {short}", f"best {short}", "GiB total"]
    if target is not None:
        header.append(f"GiB to {target_label(metric, target)}")
    timed = "sim_s_total" in first
    if timed:
        header.append("simulated s")
        if target is not None:
            header.append(f"simulated s to {target_label(metric, target)}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["method"],
            row["split"],
            str(row["rounds"]),
            _fmt_value(metric, row[f"final_{short}"]),
            _fmt_value(metric, row[f"best_{short}"]),
            f"{row['gib_total']:.3f}",
        ]
        if target is not None:
            reached = row["gib_to_target"]
            cells.append("not reached" if reached is None else f"{reached:.3f}")
        if timed:
            cells.append(f"{row['sim_s_total']:.1f}")
            if target is not None:
                took = row["sim_s_to_target"]
                cells.append("not reached" if took is None else f"{took:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
