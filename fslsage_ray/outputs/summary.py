"""One line per run: what a reader of a comparison wants first (GiB to target, accuracy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fslsage_ray.outputs.runs import RunRecord, best_within_budget, gib_to_target


def summarize(records: Sequence[RunRecord], target: float | None) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        acc = r.column("test_acc")
        gib = r.column("comm_gib_cum")
        row: dict[str, Any] = {
            "method": r.method_label,
            "split": r.partition_label,
            "rounds": r.rounds,
            "final_acc": acc[-1],
            "best_acc": max(acc),
            "gib_total": gib[-1],
        }
        if target is not None:
            row["gib_to_target"] = gib_to_target(r, target)
        rows.append(row)
    return rows


def best_within(records: Sequence[RunRecord], budget_gib: float) -> dict[str, float | None]:
    return {r.method_label: best_within_budget(r, budget_gib) for r in records}


def to_markdown(rows: Sequence[dict[str, Any]], target: float | None) -> str:
    header = ["method", "split", "rounds", "final acc", "best acc", "GiB total"]
    if target is not None:
        header.append(f"GiB to {target:.0%}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["method"],
            row["split"],
            str(row["rounds"]),
            f"{row['final_acc']:.2%}",
            f"{row['best_acc']:.2%}",
            f"{row['gib_total']:.3f}",
        ]
        if target is not None:
            reached = row["gib_to_target"]
            cells.append("not reached" if reached is None else f"{reached:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
