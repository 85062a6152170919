"""Scaling benchmark (issues 4 and 14): Ray's overhead and memory against the client count.

A thin caller of the package's scaling study (`fslsage-ray scale`, fslsage_ray/study/): the
same study runs twice, in-process (the reference compute, no Ray) and on Ray. Both do the
same work in each round (same participants, same alignment rounds), so Ray's cost is taken
round by round: the median over rounds 1.. of (Ray's round time - in-process round time),
divided by the clients that take part in a round, is what Ray and the coordinator cost per
participating client. (A difference of the two medians would not do: FSL-SAGE alternates
long alignment rounds with short ones, and the median of such a list jumps between the two
with a few milliseconds of noise.) `--repeats N` runs the pair N times, in turn, and pools
the rounds. Memory is the Ray session's peak summed USS (every process, every host), from
the study's own samplers.

    python benchmarks/scaling.py --clients 10,100,1000,10000 \
        --config configs/cifar10/scale_cnn.yaml --data per_client --samples-per-client 5
    python benchmarks/scaling.py --clients 10,20 --data split   # a quick try on digits

Targets (issue 14), judged at the largest count: at most 1 ms of Ray overhead per
participating client per round, and the Ray session within 16 GiB.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
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
    parser.add_argument(
        "--repeats", type=int, default=1, help="run the in-process/Ray pair this many times"
    )
    parser.add_argument("overrides", nargs="*", help="extra section.key=value config overrides")
    return parser.parse_args(argv)


def participants(clients: int, fraction: int | float | None) -> int:
    """Clients in one round (algorithm.clients_per_round: None all, int a count, float)."""
    if fraction is None:
        return clients
    if isinstance(fraction, int):
        return min(fraction, clients)
    return max(1, round(fraction * clients))


def round_times(study_dir: Path, run: str) -> list[float]:
    """Wall seconds of each round of one run of a study (its metrics file)."""
    import pyarrow.parquet as pq

    return pq.read_table(study_dir / run / "metrics.parquet", columns=["wall_s"])[
        "wall_s"
    ].to_pylist()


def paired_differences(inproc: list[float], ray: list[float]) -> list[float]:
    """Ray's round time minus in-process's, round by round; round 0 (start-up) left out."""
    return [r - i for i, r in list(zip(inproc, ray, strict=True))[1:]]


def overheads(
    pairs: list[tuple[Path, list[dict[str, Any]], Path, list[dict[str, Any]]]], fraction: Any
) -> list[dict[str, Any]]:
    """Per method and count, pooled over the repeats (in-process folder, rows, Ray folder,
    rows): both backends' median seconds per round, Ray's cost per participating client per
    round (median of the paired round differences, and their quartiles), and `same`: both
    learned exactly the same in every repeat."""
    pooled: dict[tuple, dict[str, Any]] = {}
    for inproc_dir, inproc, ray_dir, ray_rows in pairs:
        reference = {(r["method"], r["clients"], r["seed"]): r for r in inproc}
        for r in ray_rows:
            ref = reference.get((r["method"], r["clients"], r["seed"]))
            if ref is None:
                continue
            key = (r["method"], r["clients"])
            entry = pooled.setdefault(
                key, {"diffs": [], "inproc": [], "ray": [], "same": True, "gib": [], "in_gib": []}
            )
            entry["diffs"] += paired_differences(
                round_times(inproc_dir, ref["run"]), round_times(ray_dir, r["run"])
            )
            entry["inproc"].append(ref["s_per_round"])
            entry["ray"].append(r["s_per_round"])
            entry["same"] &= (r["final"], r["best"]) == (ref["final"], ref["best"])
            entry["gib"].append(r["peak_memory_bytes"] / GIB)
            entry["in_gib"].append(ref["peak_memory_bytes"] / GIB)
    out = []
    for (method, clients), e in pooled.items():
        k = participants(clients, fraction)
        q1, _, q3 = statistics.quantiles(e["diffs"], n=4) if len(e["diffs"]) > 1 else [0.0] * 3
        out.append(
            {
                "method": method,
                "clients": clients,
                "participants": k,
                "repeats": len(e["ray"]),
                "rounds_paired": len(e["diffs"]),
                "inproc_s": statistics.median(e["inproc"]),
                "ray_s": statistics.median(e["ray"]),
                "overhead_ms_per_participant": 1000 * statistics.median(e["diffs"]) / k,
                "overhead_ms_quartiles": [1000 * q1 / k, 1000 * q3 / k],
                "ray_peak_gib": max(e["gib"]),
                "inproc_peak_gib": max(e["in_gib"]),
                "same": e["same"],
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


def study_config(args: argparse.Namespace, backend: str):
    from fslsage_ray.config import load_config, quickstart_path

    return load_config(
        args.config or quickstart_path(),
        [*args.overrides, f"runtime.backend={backend}", "run.checkpoint_every=0"],
    )


def one_study(args: argparse.Namespace, backend: str, folder: Path) -> list[dict[str, Any]]:
    """The study on one backend (in a process of its own); its table's rows."""
    from fslsage_ray.compare import parse_methods
    from fslsage_ray.study.design import design_study, parse_counts
    from fslsage_ray.study.report import write_report
    from fslsage_ray.study.run import run_study

    runs = design_study(
        study_config(args, backend),
        parse_methods(args.methods),
        parse_counts(args.clients),
        None,
        args.data,
        args.samples_per_client,
    )
    rows = run_study(runs, folder, args.overwrite, progress=False).to_pylist()
    text, figures = write_report(rows, folder)
    print(f"{backend}:\n{text}\nfigures: {', '.join(str(f) for f in figures)}", flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if not os.environ.get("RAY_ADDRESS"):  # before ray is imported: loopback only
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    pairs = []
    spawn = multiprocessing.get_context("spawn")
    for repeat in range(args.repeats):
        base = args.out if args.repeats == 1 else args.out / f"repeat{repeat}"
        tables = {}
        for backend in ("inprocess", "ray"):
            # Each study in a fresh process: a process's memory after one study would be
            # counted in the next one's (the in-process study's is this process's USS).
            with ProcessPoolExecutor(1, mp_context=spawn) as pool:
                tables[backend] = pool.submit(one_study, args, backend, base / backend).result()
        pairs.append((base / "inprocess", tables["inprocess"], base / "ray", tables["ray"]))
    fraction = study_config(args, "ray").algorithm.clients_per_round
    rows = overheads(pairs, fraction)
    for r in rows:
        q1, q3 = r["overhead_ms_quartiles"]
        print(
            f"{r['method']:>9} {r['clients']:>6} clients ({r['participants']} a round): "
            f"median s/round in-process {r['inproc_s']:.3f}, Ray {r['ray_s']:.3f}; "
            f"Ray's cost {r['overhead_ms_per_participant']:+.2f} ms/participant "
            f"(quartiles {q1:+.2f} to {q3:+.2f}, {r['rounds_paired']} paired rounds), "
            f"Ray {r['ray_peak_gib']:.2f} GiB, same result: {'yes' if r['same'] else 'NO'}"
        )
    lines = verdicts(rows)
    print("\n".join(lines))
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "rows": rows}
    (args.out / "overhead.json").write_text(json.dumps(result | {"verdicts": lines}, indent=1))
    return 1 if any("FAIL" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
