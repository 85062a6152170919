"""One line per setting: what a reader of a comparison wants first (GiB to target, then the
final and best headline: accuracy for classifiers, loss for language models).

Runs that differ only in their seed share a line, with the mean and the spread (sample
standard deviation) over the seeds; a swept setting gets its own column (`num_clients = 50`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fslsage_ray.outputs.headline import HeadlineMetric, is_number
from fslsage_ray.outputs.runs import (
    RunRecord,
    common_headline,
    gib_to_target,
    has_sim_time,
    time_to_target,
)
from fslsage_ray.outputs.settings import group_runs, mean_spread


def summarize(records: Sequence[RunRecord], target: float | None) -> list[dict[str, Any]]:
    """Rows keyed final_<short>/best_<short> (final_acc, best_loss, ...; the mean over seeds,
    with <key>_sd beside it); the target is in the headline's units. Runs with different
    headlines are refused (ValueError).
    """
    metric = common_headline(records)
    rows = []
    for group in group_runs(records):
        runs = group.records
        final, final_sd = mean_spread([r.final_headline for r in runs])
        best, best_sd = mean_spread([r.best_headline for r in runs])
        gib, _ = mean_spread([(r.column("comm_gib_cum") or [0.0])[-1] for r in runs])
        row: dict[str, Any] = {
            "method": f"{group.method} [{group.tag}]" if group.tag else group.method,
            "split": group.split,
            "setting": group.setting,
            "seeds": len(runs),
            "rounds": min(r.rounds for r in runs),
            "headline": metric.column,
            "goal": metric.goal,
            f"final_{metric.short}": final,
            f"final_{metric.short}_sd": final_sd,
            f"best_{metric.short}": best,
            f"best_{metric.short}_sd": best_sd,
            "gib_total": gib,
        }
        if target is not None:
            reached = [gib_to_target(r, target) for r in runs]
            # A mean over the seeds that reached it would flatter: all must, or "not reached".
            row["gib_to_target"] = None if None in reached else mean_spread(reached)[0]
            row["reached"] = sum(v is not None for v in reached)
        if all(has_sim_time(x) for x in records):  # simulated time (system section)
            row["sim_s_total"] = mean_spread([r.metrics[-1]["sim_time_s"] for r in runs])[0]
            if target is not None:
                took = [time_to_target(r, target) for r in runs]
                row["sim_s_to_target"] = None if None in took else mean_spread(took)[0]
        row.update(_generation_columns(runs))
        rows.append(row)
    return rows


SCORE_HEADERS = {
    "bleu": "BLEU",
    "rouge_l": "ROUGE-L",
    "gen_bleu": "gen BLEU",
    "gen_rouge_l": "gen ROUGE-L",
}


def _generation_columns(runs: Sequence[RunRecord]) -> dict[str, float]:
    """bleu / rouge_l (mean and spread) where every seed's run folder holds generation.json
    (`fslsage-ray generate`), and gen_bleu / gen_rouge_l, the last round's scores of
    run.generate_every (a fixed subset of test MRs, decoded as run.generate_beam says), where
    every seed's metrics have them; the two are kept apart, being different decodings of
    different MR sets. Nothing otherwise."""
    from fslsage_ray.outputs.generation_scores import read_generation_scores

    found = [read_generation_scores(r.path) for r in runs]
    columns: dict[str, float] = {}
    for key in ("bleu", "rouge_l"):
        values = [f.get(key) if f else None for f in found]
        if values and None not in values:
            columns[key], columns[f"{key}_sd"] = mean_spread(values)
    for key in ("gen_bleu", "gen_rouge_l"):
        last = [[float(v) for v in r.column(key) if is_number(v)] for r in runs]
        if last and all(last):
            columns[key], columns[f"{key}_sd"] = mean_spread([v[-1] for v in last])
    return columns


def _fmt_value(metric: HeadlineMetric, value: float | None, spread: float | None = None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.2%}" if metric.is_accuracy else f"{value:.4f}"
    if spread is None:
        return text
    return text + (f" ± {spread:.2%}" if metric.is_accuracy else f" ± {spread:.4f}")


def target_label(metric: HeadlineMetric, target: float) -> str:
    """How a target is quoted in headers and legends: 81% for accuracy, loss 2.5 for loss."""
    return f"{target:.0%}" if metric.is_accuracy else f"{metric.short} {target:g}"


def to_markdown(rows: Sequence[dict[str, Any]], target: float | None) -> str:
    """The table; a setting column only when runs differ in a setting, and a seeds column
    (and "mean ± sd" cells) only when some setting was run with several seeds."""
    first = rows[0] if rows else {}
    metric = HeadlineMetric(first.get("headline", "test_acc"), first.get("goal", "max"))
    short = metric.short
    with_setting = any(row.get("setting") for row in rows)
    with_seeds = any(row.get("seeds", 1) > 1 for row in rows)
    header = ["method", "split", "rounds", f"final {short}", f"best {short}", "GiB total"]
    if with_setting:
        header.insert(2, "setting")
    if with_seeds:
        header.insert(2 + with_setting, "seeds")
    if target is not None:
        header.append(f"GiB to {target_label(metric, target)}")
    scored = [key for key in SCORE_HEADERS if any(key in row for row in rows)]
    header += [SCORE_HEADERS[key] for key in scored]
    timed = "sim_s_total" in first
    if timed:
        header.append("simulated s")
        if target is not None:
            header.append(f"simulated s to {target_label(metric, target)}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        several = row.get("seeds", 1) > 1
        cells = [row["method"], row["split"]]
        cells += [row["setting"]] if with_setting else []
        cells += [str(row.get("seeds", 1))] if with_seeds else []
        cells += [
            str(row["rounds"]),
            _fmt_value(
                metric, row[f"final_{short}"], row.get(f"final_{short}_sd") if several else None
            ),
            _fmt_value(
                metric, row[f"best_{short}"], row.get(f"best_{short}_sd") if several else None
            ),
            f"{row['gib_total']:.3f}",
        ]
        if target is not None:
            reached = row["gib_to_target"]
            if reached is not None:
                cells.append(f"{reached:.3f}")
            elif row.get("reached"):  # some seeds reached it, not all
                cells.append(f"reached by {row['reached']} of {row['seeds']} seeds")
            else:
                cells.append("not reached")
        for key in scored:
            value, spread = row.get(key), row.get(f"{key}_sd")
            text = "n/a" if value is None else f"{value:.2f}"
            cells.append(text + (f" ± {spread:.2f}" if several and value is not None else ""))
        if timed:
            cells.append(f"{row['sim_s_total']:.1f}")
            if target is not None:
                took = row["sim_s_to_target"]
                cells.append("not reached" if took is None else f"{took:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
