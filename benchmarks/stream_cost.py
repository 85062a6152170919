"""What streaming participants costs (issue 29, item 4): seconds per participant and memory.

Three cases per method, at the same client count (1,000 by default) on the Ray backend:

    1pct        algorithm.clients_per_round=0.01, streaming on (the default)
    all-stream  every client in every round, streaming on
    all-memory  every client in every round, runtime.stream_participants=false

and two ratios per method, per participant and round: all-stream / 1pct (does a round with
every client cost more per client than a round with 1%?) and all-stream / all-memory (what
loading and spilling each participant within a round costs), with each case's peak memory
of the whole Ray session (summed USS, the study's own samplers).

A shared, loaded machine makes seconds drift over minutes, so the cases run back to back,
repeated in mirrored order (repeat 0: 1pct, all-stream, all-memory per method; repeat 1:
the reverse, methods reversed too), each run in a fresh process with a fresh private Ray
(nothing left over from the previous run counted in its memory), and the load average is
recorded around each run. Round 0 (start-up, first alignment) is left out; seconds per
participant are the timed rounds' wall seconds over their participants, and also without
the round's evaluation (`eval_s`, the same 1,000 test images whatever the participants):

    python benchmarks/stream_cost.py data.data_dir=/work/shared/data
    python benchmarks/stream_cost.py --report-only      # print the ratios of a finished run

Folders already finished are kept (rerun resumes); --overwrite starts afresh.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GIB = 2**30

CASES: dict[str, list[str]] = {
    "1pct": ["algorithm.clients_per_round=0.01", "runtime.stream_participants=true"],
    "all-stream": ["algorithm.clients_per_round=null", "runtime.stream_participants=true"],
    "all-memory": ["algorithm.clients_per_round=null", "runtime.stream_participants=false"],
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs/cifar10/scale_cnn.yaml"))
    parser.add_argument("--methods", default="fsl_sage,sflv1")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--samples-per-client", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="round 0 is not timed")
    parser.add_argument("--repeats", type=int, default=2, help="mirrored order each repeat")
    parser.add_argument(
        "--budget-gb",
        type=float,
        default=0.1,
        help="client and server state budgets (GiB): small enough that streaming spills",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "stream_cost")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--report-only", action="store_true", help="print from --out only")
    parser.add_argument("overrides", nargs="*", help="extra section.key=value config overrides")
    return parser.parse_args(argv)


def schedule(methods: Sequence[str], repeats: int) -> list[tuple[int, str, str]]:
    """(repeat, method, case) in running order: each repeat mirrors the one before, so a
    drift of the machine's load over the session weighs on every case alike."""
    order = []
    for repeat in range(repeats):
        pairs = [(m, c) for m in methods for c in CASES]
        order += [(repeat, m, c) for m, c in (pairs if repeat % 2 == 0 else pairs[::-1])]
    return order


def run_name(repeat: int, method: str, case: str) -> str:
    return f"{method}-{case}-r{repeat}"


def one_run(args: argparse.Namespace, repeat: int, method: str, case: str) -> dict[str, Any]:
    """One case as a one-run scaling study in its folder (this process, a private Ray)."""
    from fslsage_ray.config import load_config
    from fslsage_ray.study.design import StudyRun, design_study
    from fslsage_ray.study.run import run_study

    budget = f"{args.budget_gb:g}"
    config = load_config(
        args.config,
        [
            *args.overrides,
            *CASES[case],
            f"run.rounds={args.rounds}",
            "run.checkpoint_every=0",
            f"runtime.client_state_budget_gb={budget}",
            f"runtime.server_state_budget_gb={budget}",
        ],
    )
    (run,) = design_study(
        config, [method], [args.clients], None, "per_client", args.samples_per_client
    )
    name = run_name(repeat, method, case)
    run = StudyRun(name, run.method, run.clients, run.seed, run.config)
    load_before = os.getloadavg()
    started = time.time()
    rows = run_study([run], args.out / name, args.overwrite, progress=False).to_pylist()
    return rows[0] | {
        "case": case,
        "repeat": repeat,
        "load_before": load_before[0],
        "load_after": os.getloadavg()[0],
        "started_utc": time.strftime("%H:%M:%S", time.gmtime(started)),
        "run_s": time.time() - started,
    }


def per_participant(study_dir: Path, run: str) -> dict[str, float]:
    """Timed rounds (1..) of one run: participants a round, seconds per participant with and
    without evaluation."""
    import pyarrow.parquet as pq

    rows = pq.read_table(study_dir / run / "metrics.parquet").to_pylist()
    timed = rows[1:] or rows
    people = sum(r["participants"] for r in timed)
    wall = sum(r["wall_s"] for r in timed)
    evaluation = sum(r.get("eval_s") or 0.0 for r in timed)
    return {
        "participants": people / len(timed),
        "s_per_round": wall / len(timed),
        "s_per_participant": wall / people,
        "work_s_per_participant": (wall - evaluation) / people,
    }


def collect(out: Path) -> list[dict[str, Any]]:
    """Every finished run's row (runs.json), with its seconds per participant."""
    path = out / "runs.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    return [r | per_participant(out / r["run"], r["run"]) for r in rows]


def pooled(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(method, case) -> means over repeats of the per-participant seconds, max memory."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["method"], r["case"]), []).append(r)
    return {
        key: {
            "repeats": len(group),
            "participants": group[0]["participants"],
            "s_per_round": statistics.mean(g["s_per_round"] for g in group),
            "s_per_participant": statistics.mean(g["s_per_participant"] for g in group),
            "work_s_per_participant": statistics.mean(g["work_s_per_participant"] for g in group),
            "each_s_per_participant": [g["s_per_participant"] for g in group],
            "peak_gib": max(g["peak_memory_bytes"] for g in group) / GIB,
            "store_gib": max(g["peak_store_bytes"] or 0 for g in group) / GIB,
            "load": [round(g["load_before"], 1) for g in group]
            + [round(g["load_after"], 1) for g in group],
        }
        for key, group in cells.items()
    }


def report(rows: Sequence[dict[str, Any]]) -> str:
    cells = pooled(rows)
    lines = [
        "| method | case | participants/round | s/round | s/participant | "
        "s/participant w/o eval | each repeat (s/participant) | peak GiB | store GiB | "
        "load (1-min, before/after) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (method, case), c in cells.items():
        each = ", ".join(f"{v:.4f}" for v in c["each_s_per_participant"])
        lines.append(
            f"| {method} | {case} | {c['participants']:.0f} | {c['s_per_round']:.2f} | "
            f"{c['s_per_participant']:.4f} | {c['work_s_per_participant']:.4f} | {each} | "
            f"{c['peak_gib']:.2f} | {c['store_gib']:.3f} | {c['load']} |"
        )
    lines.append("")
    for method in dict.fromkeys(m for m, _ in cells):
        streamed = cells.get((method, "all-stream"))
        for other, what in (("1pct", "1% participation"), ("all-memory", "in-memory path")):
            base = cells.get((method, other))
            if streamed is None or base is None:
                continue
            ratio = streamed["s_per_participant"] / base["s_per_participant"]
            work = streamed["work_s_per_participant"] / base["work_s_per_participant"]
            lines.append(
                f"{method}: all-stream / {what}: {ratio:.3f}x "
                f"per participant ({work:.3f}x "
                f"without evaluation), memory {streamed['peak_gib']:.2f} / "
                f"{base['peak_gib']:.2f} GiB"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if not os.environ.get("RAY_ADDRESS"):  # before ray is imported: loopback only
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if not args.report_only:
        args.out.mkdir(parents=True, exist_ok=True)
        runs_file = args.out / "runs.json"
        done = (
            [] if args.overwrite or not runs_file.is_file() else json.loads(runs_file.read_text())
        )
        have = {r["run"] for r in done}
        spawn = multiprocessing.get_context("spawn")
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        for repeat, method, case in schedule(methods, args.repeats):
            if run_name(repeat, method, case) in have:
                continue
            print(
                f"{time.strftime('%H:%M:%S', time.gmtime())} {method} {case} r{repeat}", flush=True
            )
            # a fresh process per run: the previous run's memory is not counted in this one
            with ProcessPoolExecutor(1, mp_context=spawn) as pool:
                done.append(pool.submit(one_run, args, repeat, method, case).result())
            runs_file.write_text(json.dumps(done, indent=1, default=str))
    print(report(collect(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
