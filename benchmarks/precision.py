"""Do bf16 autocast and channels-last pay? (issue 12, item 6's options)

The same `fslsage-ray run` (issue 12's CIFAR-10 workload: 10 clients x 500 images, 2,000
test images, the split ResNet-18, batch 256; FSL-SAGE by default, round 0 aligns) with each
of these compute settings, interleaved within every repeat so that drift in the machine
hits them alike:

    fp32             model.precision=fp32 (the reference)
    fp32+cl          model.channels_last=true
    bf16             model.precision=bf16
    bf16+cl          both

Printed per setting: seconds per ordinary round and for the alignment round, each as a
ratio to fp32 measured in the same run, peak summed USS of the process tree, final test
accuracy, and the bytes the ledger booked (every setting must book exactly the fp32
bytes: the cut stays float32).

    python benchmarks/precision.py --data-dir ../shared/data              # 1 repeat
    python benchmarks/precision.py --repeats 3 --align-epochs 10 --data-dir ../shared/data
    python benchmarks/precision.py --settings fp32,bf16 runtime.device=cuda  # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from ours import Measured, fmt, gib, machine, median_of, ratio, run_ours, stamp  # noqa: E402
from workload import DEFAULT_DATA, Sizes, overrides  # noqa: E402

SETTINGS = {
    "fp32": [],
    "fp32+cl": ["model.channels_last=true"],
    "bf16": ["model.precision=bf16"],
    "bf16+cl": ["model.precision=bf16", "model.channels_last=true"],
}
REFERENCE = "fp32"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithm", default="fsl_sage")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated")
    parser.add_argument("--rounds", type=int, default=Sizes.rounds, help=">= 2")
    parser.add_argument("--repeats", type=int, default=1, help="medians of this many runs")
    parser.add_argument("--clients", type=int, default=Sizes.clients)
    parser.add_argument("--samples-per-client", type=int, default=Sizes.samples_per_client)
    parser.add_argument("--test-size", type=int, default=Sizes.test_size)
    parser.add_argument("--align-epochs", type=int, default=None, help="default: the config's")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--timeout", type=float, default=3600.0, help="per run, seconds")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "precision.json")
    parser.add_argument("--echo", action="store_true", help="show the runs' output")
    parser.add_argument("overrides", nargs="*", help="extra section.key=value, every run")
    args = parser.parse_args(argv)
    args.settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = sorted(set(args.settings) - set(SETTINGS))
    if unknown or REFERENCE not in args.settings:
        parser.error(f"--settings takes {', '.join(SETTINGS)} and must include {REFERENCE}")
    if args.rounds < 2 or args.repeats < 1:
        parser.error("--rounds must be >= 2 (the first is warm-up) and --repeats >= 1")
    try:
        args.sizes = Sizes(args.clients, args.samples_per_client, args.test_size, args.rounds)
    except ValueError as err:
        parser.error(str(err))
    if not (args.data_dir / "cifar10-train.parquet").is_file():
        parser.error(f"no CIFAR-10 parquet files in {args.data_dir} (see ../shared/data/README.md)")
    return args


def run_overrides(args: argparse.Namespace, setting: str) -> list[str]:
    extra = [*args.overrides, *SETTINGS[setting]]
    if args.align_epochs is not None:
        extra.append(f"alignment.epochs={args.align_epochs}")
    return overrides(args.sizes, args.data_dir.resolve(), args.algorithm, None, extra)


def align_s(m: Measured) -> float | None:
    return m.rounds[0].get("align_s") or None if m.rounds else None


def summarise(runs: dict[str, list[Measured]]) -> dict[str, dict[str, Any]]:
    ref = runs[REFERENCE]
    ref_round = median_of([m.per_round() for m in ref])
    ref_align = median_of([align_s(m) for m in ref])
    out = {}
    for setting, measured in runs.items():
        per_round = median_of([m.per_round() for m in measured])
        aligned = median_of([align_s(m) for m in measured])
        out[setting] = {
            "per_round_s": per_round,
            "per_round_ratio": ratio(per_round, ref_round),
            "align_s": aligned,
            "align_ratio": ratio(aligned, ref_align),
            "peak_uss": median_of([m.peak_uss for m in measured]),
            "final_acc": median_of([m.final_acc() for m in measured]),
            "comm_bytes": sorted({sum(r.get("comm_bytes", 0) for r in m.rounds) for m in measured}),
        }
    return out


def format_report(summary: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"{'setting':9} {'s/round':>8} {'x fp32':>7} {'align s':>8} {'x fp32':>7} "
        f"{'peak USS':>10} {'acc':>6}  bytes booked"
    ]
    ref_bytes = summary[REFERENCE]["comm_bytes"]
    for setting, s in summary.items():
        same = "same as fp32" if s["comm_bytes"] == ref_bytes else f"DIFFERENT: {s['comm_bytes']}"
        lines.append(
            f"{setting:9} {fmt(s['per_round_s']):>8} {fmt(s['per_round_ratio']):>7} "
            f"{fmt(s['align_s']):>8} {fmt(s['align_ratio']):>7} {gib(s['peak_uss']):>10} "
            f"{fmt(s['final_acc'], '.3f'):>6}  {same}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    runs: dict[str, list[Measured]] = {s: [] for s in args.settings}
    with tempfile.TemporaryDirectory(prefix="precision_") as tmp:
        for i in range(args.repeats):
            for setting in args.settings:
                print(f"run {i + 1}/{args.repeats}: {setting} ...", flush=True)
                m, tree = run_ours(
                    run_overrides(args, setting),
                    Path(tmp) / f"{setting}-{i}",
                    timeout=args.timeout,
                    echo=args.echo,
                )
                if m.returncode != 0 or len(m.rounds) != args.rounds:
                    print(tree.tail(60), file=sys.stderr)
                    raise SystemExit(f"the {setting} run failed (exit {m.returncode}); see above")
                walls = " ".join(f"{r['wall_s']:.2f}" for r in m.rounds)
                print(f"  s per round {walls}; align {fmt(align_s(m))} s", flush=True)
                runs[setting].append(m)
    summary = summarise(runs)
    result = {
        "benchmark": "precision",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": stamp(),
        "machine": machine(),
        "sizes": str(args.sizes),
        "algorithm": args.algorithm,
        "align_epochs": args.align_epochs,
        "repeats": args.repeats,
        "summary": summary,
        "runs": {s: [vars(m) for m in ms] for s, ms in runs.items()},
    }
    print()
    print(f"{args.sizes}, {args.algorithm}; medians of {args.repeats} run(s)")
    print(format_report(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nresults: {args.out}")
    same = all(s["comm_bytes"] == summary[REFERENCE]["comm_bytes"] for s in summary.values())
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
