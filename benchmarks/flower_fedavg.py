"""FedAvg on Flower's Ray simulation against the same FedAvg on fslsage-ray (issue 12).

The workload of issue 12: CIFAR-10 from ../shared/data, 10 clients x 500 images, 2,000 test
images, batch 256, the ResNet-18 of configs/cifar10/fsl_sage.yaml (FedAvg trains it whole),
Adam as configured, one local epoch per round, no augmentation, evaluation of the global model
on the test images after every round. Flower runs it with its FedAvg strategy and 2 client
actors of 1 CPU each (`flower_app.py`, in Flower's own virtual environment, with the
project's data, model and optimizer code); ours runs `fslsage-ray run` with the default layout.

Flower is not a dependency of this package: the first run creates a virtual environment
(default ~/.cache/fslsage_ray/flower-venv) and installs `flwr[simulation]` into it from the
package registry, with torch/torchvision at this project's versions; later runs reuse it.

    python benchmarks/flower_fedavg.py                     # 3 rounds, once each
    python benchmarks/flower_fedavg.py --repeats 3         # medians of 3 runs each
    python benchmarks/flower_fedavg.py --quick             # tiny sizes: does it work?

Per run it measures, from outside each process: the wall time of each round, the time from
starting the process to the end of its first round, and the peak memory of the whole
process tree (summed USS; RSS beside it). Targets (issue 12): ours per round at most 0.85x
Flower's, ours to the first round at most Flower's, ours peak memory at most Flower's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # ours, proctree, workload; this fslsage_ray

from ours import (  # noqa: E402
    Measured,
    fmt,
    gib,
    largest,
    machine,
    median_of,
    ratio,
    run_ours,
    sampling_extra,
    stamp,
    verdict,
)
from proctree import clean_env, run_tree  # noqa: E402
from workload import DEFAULT_DATA, REPO, Sizes, overrides  # noqa: E402

DEFAULT_VENV = Path("~/.cache/fslsage_ray/flower-venv").expanduser()
# Flower's simulation extra brings its own Ray; the rest is what flower_app.py imports
# from this project (torch and torchvision at the versions this project is tested with).
FLOWER_REQUIREMENTS = (
    "flwr[simulation]",
    "torch==2.14.1",
    "torchvision==0.29.1",
    "pyarrow",
    "numpy",
    "pillow",
    "pyyaml",
    "tqdm",
)
IMPORT_CHECK = "import flwr, ray, torch, torchvision, pyarrow, numpy, PIL, yaml, tqdm"
VERSIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({p: m.version(p) for p in ('flwr', 'ray', 'torch', 'torchvision')}))"
)
TARGETS = {"per_round": 0.85, "first_round": 1.0, "peak_memory": 1.0}  # ours / Flower, at most
QUICK = Sizes(clients=2, samples_per_client=64, test_size=100, rounds=2)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=Sizes.rounds)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each; medians reported")
    parser.add_argument("--clients", type=int, default=Sizes.clients)
    parser.add_argument("--samples-per-client", type=int, default=Sizes.samples_per_client)
    parser.add_argument("--test-size", type=int, default=Sizes.test_size)
    parser.add_argument("--quick", action="store_true", help=f"tiny sizes: {QUICK}")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="Flower's environment")
    parser.add_argument("--client-cpus", type=float, default=1.0, help="per Flower client actor")
    parser.add_argument("--sample-every", type=float, default=0.2, help="seconds between samples")
    parser.add_argument(
        "--uss-every", type=float, default=5.0, help="seconds between USS sweeps (costly)"
    )
    parser.add_argument("--only", choices=("flower", "ours"), help="run one side only")
    parser.add_argument("--no-install", action="store_true", help="fail if the venv is missing")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per run, seconds")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "flower_fedavg.json")
    parser.add_argument("--echo", action="store_true", help="show the runs' output as it comes")
    parser.add_argument("overrides", nargs="*", help="extra section.key=value for our side")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.clients = QUICK.rounds, QUICK.clients
        args.samples_per_client, args.test_size = QUICK.samples_per_client, QUICK.test_size
    try:
        args.sizes = Sizes(args.clients, args.samples_per_client, args.test_size, args.rounds)
    except ValueError as err:
        parser.error(str(err))
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if not (args.data_dir / "cifar10-train.parquet").is_file():
        parser.error(f"no CIFAR-10 parquet files in {args.data_dir} (see ../shared/data/README.md)")
    return args


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def venv_ready(venv: Path) -> bool:
    python = venv_python(venv)
    if not python.exists():
        return False
    check = subprocess.run([str(python), "-c", IMPORT_CHECK], capture_output=True, timeout=300)
    return check.returncode == 0


def ensure_venv(venv: Path, install: bool = True) -> dict[str, Any]:
    """Flower's environment, created and filled from the registry if missing or broken."""
    info: dict[str, Any] = {"venv": str(venv), "installed_now": False}
    if not venv_ready(venv):
        if not install:
            raise SystemExit(f"no usable Flower environment at {venv} (and --no-install)")
        print(f"installing Flower into {venv} (a few minutes) ...", flush=True)
        t0 = time.perf_counter()
        base = getattr(sys, "_base_executable", sys.executable)  # not this venv's python
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        pip = [str(venv_python(venv)), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, *FLOWER_REQUIREMENTS], check=True)
        info.update(installed_now=True, install_s=time.perf_counter() - t0)
        print(f"  installed in {info['install_s']:.0f} s", flush=True)
    out = subprocess.run(
        [str(venv_python(venv)), "-c", VERSIONS], capture_output=True, text=True, check=True
    )
    info["versions"] = json.loads(out.stdout)
    return info


def parse_marks(lines: list[tuple[float, str]]) -> dict[str, Any]:
    """flower_app.py's `BENCH <event> <time> ...` lines: round ends and accuracies."""
    ends: dict[int, float] = {}
    accs: dict[int, float] = {}
    for _, line in lines:
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "BENCH" and parts[1] == "round":
            r = int(parts[3])
            ends[r] = float(parts[2])
            if len(parts) >= 5:
                accs[r] = float(parts[4])
    return {"ends": ends, "accs": accs}


def run_flower(args: argparse.Namespace, venv: Path) -> Measured:
    s = args.sizes
    command = [
        str(venv_python(venv)),
        str(HERE / "flower_app.py"),
        "--data-dir",
        str(args.data_dir.resolve()),
        "--clients",
        str(s.clients),
        "--samples-per-client",
        str(s.samples_per_client),
        "--test-size",
        str(s.test_size),
        "--rounds",
        str(s.rounds),
        "--client-cpus",
        str(args.client_cpus),
    ]
    env = clean_env(FLWR_TELEMETRY_ENABLED="0", PYTHONPATH=f"{HERE}{os.pathsep}{REPO}")
    env.pop("VIRTUAL_ENV", None)
    run = run_tree(
        command, env, REPO, args.sample_every, args.uss_every, None, args.timeout, args.echo
    )
    marks = parse_marks(run.lines)
    ends = marks["ends"]
    rounds = [
        {"round": r - 1, "wall_s": ends[r] - ends[r - 1], "test_acc": marks["accs"].get(r)}
        for r in range(1, s.rounds + 1)
        if r in ends and r - 1 in ends
    ]
    if run.returncode != 0 or len(rounds) != s.rounds:
        print(run.tail(60), file=sys.stderr)
        raise SystemExit(f"the Flower run failed (exit {run.returncode}); its output is above")
    return Measured(
        name="flower",
        rounds=rounds,
        first_round_s=ends[1] - run.start,
        peak_uss=run.memory.peak_uss,
        peak_rss=run.memory.peak_rss,
        peak_anon=run.memory.peak_anon,
        peak_processes=run.memory.peak_processes,
        wall_s=run.wall_s,
        returncode=run.returncode,
        extra=sampling_extra(run),
    )


def run_ours_side(args: argparse.Namespace, tmp: Path, i: int) -> Measured:
    over = overrides(args.sizes, args.data_dir.resolve(), "fedavg", False, args.overrides)
    measured, run = run_ours(
        over, tmp / f"ours-{i}", args.sample_every, args.uss_every, args.timeout, args.echo
    )
    if measured.returncode != 0 or len(measured.rounds) != args.sizes.rounds:
        print(run.tail(60), file=sys.stderr)
        raise SystemExit(f"our run failed (exit {measured.returncode}); its output is above")
    measured.extra["overrides"] = over
    return measured


def summarise(runs: list[Measured]) -> dict[str, Any]:
    return {
        "per_round_s": median_of([r.per_round() for r in runs]),
        "first_round_s": median_of([r.first_round_s for r in runs]),
        "peak_uss": median_of([r.peak_uss for r in runs]),
        "peak_rss": median_of([r.peak_rss for r in runs]),
        "peak_anon": median_of([r.peak_anon for r in runs]),
        "sampling_cost_s": median_of([r.extra["sampling_cost_s"] for r in runs]),
        "wall_s": median_of([r.wall_s for r in runs]),
        "final_acc": median_of([r.final_acc() for r in runs]),
    }


def comparison(flower: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    ratios = {
        "per_round": ratio(ours["per_round_s"], flower["per_round_s"]),
        "first_round": ratio(ours["first_round_s"], flower["first_round_s"]),
        "peak_memory": ratio(ours["peak_uss"], flower["peak_uss"]),
    }
    return {
        "ratios": ratios,
        "verdicts": {k: verdict(v, TARGETS[k]) for k, v in ratios.items()},
    }


def format_report(result: dict[str, Any]) -> str:
    f, o = result["summary"].get("flower"), result["summary"].get("ours")
    n = result["repeats"]
    lines = [f"FedAvg, {result['sizes']}; medians of {n} run(s) each", ""]
    lines.append(f"{'':28} {'Flower':>12} {'fslsage-ray':>12} {'ours/Flower':>12} target")
    c = result.get("comparison", {"ratios": {}, "verdicts": {}})
    rows = (
        ("s per round (after the 1st)", "per_round_s", "per_round", ".2f"),
        ("s to end of first round", "first_round_s", "first_round", ".1f"),
        ("peak memory, summed USS", "peak_uss", "peak_memory", None),
        ("peak memory, summed RSS", "peak_rss", None, None),
        ("peak memory, summed RssAnon", "peak_anon", None, None),
        ("whole run, s", "wall_s", None, ".1f"),
        ("final test accuracy", "final_acc", None, ".3f"),
        ("CPU s spent sampling", "sampling_cost_s", None, ".1f"),
    )
    for label, key, rkey, spec in rows:
        fv = f[key] if f else None
        ov = o[key] if o else None
        cells = [gib(fv), gib(ov)] if spec is None else [fmt(fv, spec), fmt(ov, spec)]
        r = c["ratios"].get(rkey) if rkey else None
        target = f"<= {TARGETS[rkey]:g}: {c['verdicts'][rkey]}" if rkey in c["verdicts"] else ""
        lines.append(f"{label:28} {cells[0]:>12} {cells[1]:>12} {fmt(r, '.2f'):>12} {target}")
    lines.append("")
    for side in ("flower", "ours"):
        for i, run in enumerate(result["runs"].get(side, [])):
            walls = " ".join(f"{r['wall_s']:.2f}" for r in run["rounds"])
            lines.append(f"{side} run {i}: s per round {walls}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "flower_fedavg",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": stamp(),
        "machine": machine(),
        "sizes": str(args.sizes),
        "repeats": args.repeats,
        "runs": {},
        "summary": {},
    }
    if args.only != "ours":
        result["flower_env"] = ensure_venv(args.venv, not args.no_install)
        print(f"Flower environment: {result['flower_env']}", flush=True)
    sides = [s for s in ("flower", "ours") if args.only in (None, s)]
    runs: dict[str, list[Measured]] = {s: [] for s in sides}
    with tempfile.TemporaryDirectory(prefix="flower_fedavg_") as tmp:
        for i in range(args.repeats):
            for side in sides:
                print(f"run {i + 1}/{args.repeats}: {side} ...", flush=True)
                if side == "flower":
                    m = run_flower(args, args.venv)
                else:
                    m = run_ours_side(args, Path(tmp), i)
                walls = " ".join(f"{r['wall_s']:.2f}" for r in m.rounds)
                print(
                    f"  s per round {walls}; first round ends at {fmt(m.first_round_s, '.1f')} s;"
                    f" peak USS {gib(m.peak_uss)}, RSS {gib(m.peak_rss)},"
                    f" anon {gib(m.peak_anon)}; sampling took {m.extra['sampling_cost_s']:.1f} s;"
                    f" whole run {m.wall_s:.1f} s\n  largest at the USS peak (GiB): {largest(m)}",
                    flush=True,
                )
                runs[side].append(m)
    result["runs"] = {s: [vars(m) for m in ms] for s, ms in runs.items()}
    result["summary"] = {s: summarise(ms) for s, ms in runs.items()}
    if len(sides) == 2:
        result["comparison"] = comparison(result["summary"]["flower"], result["summary"]["ours"])
    print()
    print(format_report(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nresults: {args.out}")
    failed = any(v == "FAIL" for v in result.get("comparison", {}).get("verdicts", {}).values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
