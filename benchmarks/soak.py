"""Soak benchmark: many rounds with many clients on the Ray backend, watching memory.

A leak in a simulator of this kind (object refs kept alive, buffers that only grow, state
copied per round) shows only after hundreds of rounds. This runs the offline digits quick
start with 100 clients for 300 rounds and records, every 10 rounds, the memory of every
process of the Ray session, the object-store bytes and the driver's RSS; it fails (exit 1)
when total Ray RSS or the object store grows from round 10 (--baseline-round) to the end
by more than max(10 %, 200 MiB).

    python benchmarks/soak.py                         # 300 rounds, 100 clients (~6 min)
    python benchmarks/soak.py --rounds 30 --clients 20  # a quick try
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MIB = 2**20
GROWTH_FRACTION = 0.10
GROWTH_FLOOR = 200 * MIB
CHECKED = ("ray_rss", "store_bytes_used")  # the verdict's quantities
BASE_OVERRIDES = (  # added to the quick start preset (digits, split CNN, FSL-SAGE)
    "data.name=digits",
    "model.name=cnn",
    "algorithm.batch_size=16",
    "alignment.every=10",
    "alignment.epochs=5",
    # ~14 samples per client per round at 100 clients: a 128-sample alignment buffer is full
    # by round 10, so the baseline sample does not count the buffers still filling.
    "alignment.buffer_size=128",
    "runtime.backend=ray",
    "run.name=soak",
)


def _loopback_only_env() -> None:
    """Must run before ray is first imported: Ray reads its local-only switch at import."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if not os.environ.get("RAY_ADDRESS"):
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--every", type=int, default=10, help="rounds between samples")
    parser.add_argument(
        "--baseline-round",
        type=int,
        default=None,
        help="the sample growth is measured from (default: the first, round --every); a later "
        "one leaves out warm-up (alignment buffers and optimizer states filling)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "soak.json")
    parser.add_argument("overrides", nargs="*", help="extra section.key=value config overrides")
    args = parser.parse_args(argv)
    if args.rounds < 2 * args.every:
        parser.error(f"--rounds must be at least 2 x --every ({2 * args.every}) to see growth")
    if args.baseline_round is None:
        args.baseline_round = args.every
    if args.baseline_round % args.every or not args.every <= args.baseline_round < args.rounds:
        parser.error("--baseline-round must be a multiple of --every, below --rounds")
    return args


def make_sampled_metrics(base: type, every: int, on_sample: Callable[[int, dict], None]) -> Any:
    """A metrics table that calls on_sample after every `every`-th round, at the round's end
    (actors idle, before the next round and before Ray shuts down after the last one)."""
    from fslsage_ray.study.measure import hooked_metrics

    return hooked_metrics(base, every, on_sample)()


def growth_verdict(samples: list[dict[str, Any]], baseline_round: int) -> list[dict[str, Any]]:
    """Growth of each checked quantity from the baseline sample to the last, against its bound."""
    first = next(s for s in samples if s["round"] == baseline_round)
    last = samples[-1]
    out = []
    for key in CHECKED:
        base, end = first[key], last[key]
        bound = max(GROWTH_FRACTION * base, GROWTH_FLOOR)
        out.append(
            {
                "quantity": key,
                "from_round": first["round"],
                "to_round": last["round"],
                "start": base,
                "end": end,
                "growth": end - base,
                "bound": bound,
                "ok": end - base <= bound,
            }
        )
    return out


def slope_mib_per_100_rounds(samples: list[dict[str, Any]], key: str) -> float:
    """Least-squares trend, less sensitive than two end points to one noisy sample."""
    xs = [s["round"] for s in samples]
    ys = [s[key] / MIB for s in samples]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return 100 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def machine() -> dict[str, Any]:
    import psutil  # vendored by ray, which the caller has imported

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "memory_total_bytes": psutil.virtual_memory().total,
    }


def _mib(value: float) -> str:
    return f"{value / MIB:9.1f}"


def format_table(samples: list[dict[str, Any]]) -> str:
    head = (
        f"{'round':>6} {'s/round':>8} {'acc':>6} {'procs':>5} {'ray RSS':>9} {'ray USS':>9} "
        f"{'ray PSS':>9} {'workers':>9} {'driver':>9} {'store':>9} {'pinned':>9} {'objects':>7}"
    )
    lines = [head, "-" * len(head)]
    for s in samples:
        lines.append(
            f"{s['round']:>6} {s['s_per_round']:>8.2f} {s['test_acc']:>6.3f} "
            f"{s['num_processes']:>5} {_mib(s['ray_rss'])} {_mib(s['ray_uss'])} "
            f"{_mib(s['ray_pss'])} {_mib(s['workers_rss'])} {_mib(s['driver_rss'])} "
            f"{_mib(s['store_bytes_used'])} {_mib(s['store_primary_bytes'])} "
            f"{s['store_num_objects']:>7}"
        )
    return "\n".join(lines) + (
        "\n(MiB; workers: RSS of the raylet's worker processes; store: bytes in the object "
        "store; pinned: its primary copies, i.e. objects something still references)"
    )


def format_verdict(verdict: list[dict[str, Any]], samples: list[dict[str, Any]]) -> str:
    lines = [
        f"bound: growth from round {verdict[0]['from_round']} to round {verdict[0]['to_round']} "
        f"must stay below max({GROWTH_FRACTION:.0%} of the round-{verdict[0]['from_round']} "
        f"value, {GROWTH_FLOOR / MIB:.0f} MiB)"
    ]
    for v in verdict:
        lines.append(
            f"  {v['quantity']:<17} {v['start'] / MIB:9.1f} -> {v['end'] / MIB:9.1f} MiB: "
            f"growth {v['growth'] / MIB:+8.1f} MiB, bound {v['bound'] / MIB:7.1f} MiB: "
            f"{'ok' if v['ok'] else 'EXCEEDED'}"
        )
    later = samples[len(samples) // 2 :]  # a leak keeps its slope; warm-up flattens out
    for key in ("ray_rss", "ray_pss", "driver_rss", "store_bytes_used"):
        lines.append(
            f"  trend {key:<16} {slope_mib_per_100_rounds(samples, key):+8.1f} MiB per 100 "
            f"rounds overall, {slope_mib_per_100_rounds(later, key):+8.1f} from round "
            f"{later[0]['round']} on"
        )
    lines.append("verdict: " + ("PASS" if all(v["ok"] for v in verdict) else "FAIL"))
    return "\n".join(lines)


def run_soak(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the simulation, sampling memory every args.every rounds; returns samples, info."""
    from memory import session_sample

    from fslsage_ray.config import config_to_dict, load_config, quickstart_path
    from fslsage_ray.simulation import Simulation

    overrides = [
        *BASE_OVERRIDES,
        f"algorithm.num_clients={args.clients}",
        f"run.rounds={args.rounds}",
        *args.overrides,
    ]
    config = load_config(quickstart_path(), overrides)
    samples: list[dict[str, Any]] = []
    last = {"round": 0, "elapsed_s": 0.0}

    def on_sample(rounds_done: int, row: dict[str, Any]) -> None:
        # Round work only (the metrics' wall_s): checkpoints and sampling are left out.
        per_round = (row["elapsed_s"] - last["elapsed_s"]) / max(rounds_done - last["round"], 1)
        t0 = time.perf_counter()
        sample = session_sample()
        sample.update(
            round=rounds_done,
            elapsed_s=row["elapsed_s"],
            s_per_round=per_round,
            test_acc=row["test_acc"],
            sample_cost_s=time.perf_counter() - t0,
            checkpoint_bytes=checkpoint.stat().st_size if checkpoint.is_file() else 0,
        )
        samples.append(sample)
        print(
            f"round {rounds_done:>4}: {per_round:6.2f} s/round, ray RSS "
            f"{sample['ray_rss'] / MIB:.0f} MiB, store {sample['store_bytes_used'] / MIB:.1f} MiB",
            flush=True,
        )
        last.update(round=rounds_done, elapsed_s=row["elapsed_s"])

    with tempfile.TemporaryDirectory(prefix="fslsage-soak-") as tmp:
        run_dir = Path(tmp) / "run"  # a real run folder: metrics and checkpoints are written
        checkpoint = run_dir / "checkpoint.pt"  # the last one written before the sample
        sim = Simulation(config, run_dir, progress=False)
        sim.metrics = make_sampled_metrics(type(sim.metrics), args.every, on_sample)
        start = time.perf_counter()
        sim.run()
        total_s = time.perf_counter() - start
    info = {
        "config": config_to_dict(config),
        "overrides": overrides,
        "total_s": total_s,
        "rounds_done": len(sim.metrics.rows),
        "restarts": sim.restarts,
    }
    return samples, info


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _loopback_only_env()
    sys.path.insert(0, str(HERE))  # for `memory`, when run as a script from anywhere
    import ray

    started = datetime.now(timezone.utc)
    samples, info = run_soak(args)
    if len(samples) < 2:
        print(f"only {len(samples)} samples: nothing to compare", file=sys.stderr)
        return 2
    verdict = growth_verdict(samples, args.baseline_round)
    print(format_table(samples))
    print(format_verdict(verdict, samples))
    import torch

    result = {
        "benchmark": "soak",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": {"ray": ray.__version__, "torch": torch.__version__},
        "bound": {
            "fraction": GROWTH_FRACTION,
            "floor_bytes": GROWTH_FLOOR,
            "checked": CHECKED,
            "baseline_round": args.baseline_round,
        },
        "verdict": verdict,
        "passed": all(v["ok"] for v in verdict),
        **info,
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(f"results: {args.out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
