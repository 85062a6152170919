"""Scaling benchmark (issues 4 and 14): Ray's overhead and memory against the client count.

A thin caller of the package's scaling study (`fslsage-ray scale`, fslsage_ray/study/): the
same study runs twice, in-process (the reference compute, no Ray) and on Ray, and the
difference in median seconds per round, divided by the clients that take part in a round,
is what Ray and the coordinator cost per participating client. Memory is the Ray session's
peak summed USS (every process, every host), from the study's own samplers.

    python benchmarks/scaling.py --clients 10,100,1000,10000 \
        --config configs/cifar10/scale_cnn.yaml --data per_client --samples-per-client 5
    python benchmarks/scaling.py --clients 10,20 --data split   # a quick try on digits

Targets (issue 14), judged at the largest count: at most 1 ms of Ray overhead per
participating client per round, and the Ray session within 16 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GIB = 2**30
TARGET_OVERHEAD_MS = 1.0
TARGET_MEMORY_BYTES = 16 * GIB


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="10,100,1000")
    parser.add_argument("--config", help="YAML experiment (default: the digits quick start)")
    parser.add_argument("--methods", default="fsl_sage")
    parser.add_argument("--data", choices=("split", "per_client"), default="split")
    parser.add_argument("--samples-per-client", type=int)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scaling")
    parser.add_argument("--overwrite", action="store_true", help="start both studies afresh")
    parser.add_argument("overrides", nargs="*", help="extra section.key=value config overrides")
    return parser.parse_args(argv)


def participants(clients: int, fraction: int | float | None) -> int:
    """Clients in one round (algorithm.clients_per_round: None all, int a count, float)."""
    if fraction is None:
        return clients
    if isinstance(fraction, int):
        return min(fraction, clients)
    return max(1, round(fraction * clients))


def overheads(
    inproc: list[dict[str, Any]], ray_rows: list[dict[str, Any]], fraction: Any
) -> list[dict[str, Any]]:
    """Per method and count: both backends' seconds per round and Ray's cost per
    participating client per round; `same`: both learned exactly the same."""
    reference = {(r["method"], r["clients"], r["seed"]): r for r in inproc}
    out = []
    for r in ray_rows:
        ref = reference.get((r["method"], r["clients"], r["seed"]))
        if ref is None:
            continue
        k = participants(r["clients"], fraction)
        out.append(
            {
                "method": r["method"],
                "clients": r["clients"],
                "participants": k,
                "inproc_s": ref["s_per_round"],
                "ray_s": r["s_per_round"],
                "overhead_ms_per_participant": 1000 * (r["s_per_round"] - ref["s_per_round"]) / k,
                "ray_peak_gib": r["peak_memory_bytes"] / GIB,
                "inproc_peak_gib": ref["peak_memory_bytes"] / GIB,
                "same": (r["final"], r["best"]) == (ref["final"], ref["best"]),
            }
        )
    return out


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["NOT RUN"]
    top = max(r["clients"] for r in rows)
    lines = []
    for r in (r for r in rows if r["clients"] == top):
        ms, gib = r["overhead_ms_per_participant"], r["ray_peak_gib"]
        fast = "PASS" if ms <= TARGET_OVERHEAD_MS else "FAIL"
        small = "PASS" if gib * GIB <= TARGET_MEMORY_BYTES else "FAIL"
        lines.append(
            f"{r['method']} at {top} clients: overhead {ms:+.2f} ms per participating client "
            f"per round (<= {TARGET_OVERHEAD_MS:g}: {fast}), Ray session {gib:.2f} GiB "
            f"(<= 16: {small})"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if not os.environ.get("RAY_ADDRESS"):  # before ray is imported: loopback only
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from fslsage_ray.compare import parse_methods
    from fslsage_ray.config import load_config, quickstart_path
    from fslsage_ray.study.plan import parse_counts, plan_study
    from fslsage_ray.study.report import write_report
    from fslsage_ray.study.run import run_study

    tables = {}
    for backend in ("inprocess", "ray"):
        config = load_config(
            args.config or quickstart_path(),
            [*args.overrides, f"runtime.backend={backend}", "run.checkpoint_every=0"],
        )
        runs = plan_study(
            config,
            parse_methods(args.methods),
            parse_counts(args.clients),
            None,
            args.data,
            args.samples_per_client,
        )
        folder = args.out / backend
        tables[backend] = run_study(runs, folder, args.overwrite, progress=False).to_pylist()
        text, figures = write_report(tables[backend], folder)
        print(f"{backend}:\n{text}\nfigures: {', '.join(str(f) for f in figures)}")
    rows = overheads(tables["inprocess"], tables["ray"], config.algorithm.clients_per_round)
    for r in rows:
        print(
            f"{r['method']:>9} {r['clients']:>6} clients ({r['participants']} a round): "
            f"in-process {r['inproc_s']:.3f} s, Ray {r['ray_s']:.3f} s, "
            f"{r['overhead_ms_per_participant']:+.2f} ms/participant, Ray {r['ray_peak_gib']:.2f} "
            f"GiB, same result: {'yes' if r['same'] else 'NO'}"
        )
    lines = verdicts(rows)
    print("\n".join(lines))
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "rows": rows}
    (args.out / "overhead.json").write_text(json.dumps(result | {"verdicts": lines}, indent=1))
    return 1 if any("FAIL" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
