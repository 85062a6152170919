"""Start-up time: from the command to the first round, phase by phase.

Every measurement is a fresh Python process, as `fslsage-ray run` is, so imports are paid in
full. It reports, in seconds since the process started: imports done, data loaded, models
built, Ray started, actors ready and the first round done. Two scenarios:
  digits - the offline quick start (digits, split CNN, FSL-SAGE, Ray backend);
  cifar10 - CIFAR-10 from parquet (JPEG) files, 5,000 training and 2,000 test images,
            split ResNet-18 (configs/cifar10/fsl_sage_cpu_small.yaml); skipped with a
            message when the data folder is absent.
Each runs twice on one decoded-data cache folder: cold (empty: JPEGs decoded, file hashes
computed) then warm (what the cold run stored), repeated --repeats times (medians shown).

    python benchmarks/startup.py                          # both scenarios, once each
    python benchmarks/startup.py --scenarios cifar10 --repeats 3 --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKS = ("imports", "data", "models", "ray", "actors", "round0")
HEADERS = {
    "imports": "imports",
    "data": "data loaded",
    "models": "models built",
    "ray": "Ray started",
    "actors": "actors ready",
    "round0": "round 0 done",
}


def scenario_args(name: str, data_dir: Path) -> list[str]:
    """`--config` and overrides of a scenario, as one would type them after `fslsage-ray run`."""
    if name == "digits":
        return []
    return [
        "--config",
        str(REPO / "configs" / "cifar10" / "fsl_sage_cpu_small.yaml"),
        f"data.data_dir={data_dir}",
        "data.train_subset=5000",
        "data.test_subset=2000",
    ]


# --- the measured process -------------------------------------------------------------------
class _RoundZero(logging.Handler):
    """Notes when the first round's log line is written."""

    def __init__(self) -> None:
        super().__init__()
        self.at: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.at is None and record.getMessage().startswith("round 0 "):
            self.at = record.created


def child(args: list[str]) -> None:
    """Run one round the way the CLI would; print the wall-clock time of each mark."""
    from fslsage_ray.config import load_config, quickstart_path
    from fslsage_ray.simulation import Simulation

    marks = {"imports": time.time()}
    config_path = quickstart_path()
    if args[:1] == ["--config"]:
        config_path, args = args[1], args[2:]
    config = load_config(config_path, [*args, "run.rounds=1"])
    handler = _RoundZero()
    logger = logging.getLogger("fslsage_ray")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    with tempfile.TemporaryDirectory() as out:
        begin = time.time()
        sim = Simulation(config, Path(out) / "run", progress=False)
        marks["data"] = begin + sim.startup["data"]
        marks["models"] = marks["data"] + sim.startup["models"]
        marks["ray"] = time.time()  # the cluster is up once Simulation() returns
        begin = time.time()
        sim.run()
        marks["actors"] = begin + sim.startup["workers"]
        marks["round0"] = handler.at
    print("MARKS " + json.dumps(marks))


# --- the driver -----------------------------------------------------------------------------
def measure(name: str, data_dir: Path, cache: Path) -> dict[str, float]:
    env = dict(os.environ)
    env["FSLSAGE_RAY_CACHE"] = str(cache)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    command = [sys.executable, __file__, "--child", *scenario_args(name, data_dir)]
    start = time.time()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("MARKS ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    marks = json.loads(lines[-1].removeprefix("MARKS "))
    return {k: marks[k] - start for k in MARKS}


def medians(samples: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(s[k] for s in samples) for k in MARKS}


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    head = ["scenario", "cache", *(HEADERS[k] for k in MARKS), "data phase"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, states in results.items():
        for state, m in states.items():
            cells = [f"{m[k]:.1f}" for k in MARKS] + [f"{m['data'] - m['imports']:.2f}"]
            rows.append(f"| {name} | {state} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def ratios(results: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    lines = []
    for name, states in results.items():
        cold, warm = states["cold"], states["warm"]
        data = (cold["data"] - cold["imports"]) / max(warm["data"] - warm["imports"], 1e-9)
        lines.append(
            f"{name}: cold/warm data phase {data:.1f}x, actors ready "
            f"{cold['actors'] / warm['actors']:.2f}x, round 0 done "
            f"{cold['round0'] / warm['round0']:.2f}x"
        )
    return lines


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="digits,cifar10", help="comma-separated")
    parser.add_argument("--repeats", type=int, default=1, help="cold+warm pairs per scenario")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "startup.json"
    )
    opts = parser.parse_args()
    names = [s for s in opts.scenarios.split(",") if s]
    unknown = sorted(set(names) - {"digits", "cifar10"})
    if unknown or opts.repeats < 1:
        parser.error(f"unknown scenario(s) {unknown}" if unknown else "--repeats must be >= 1")
    data_dir = opts.data_dir.expanduser().resolve()
    if "cifar10" in names and not (data_dir / "cifar10-train.parquet").is_file():
        print(f"cifar10 skipped: {data_dir}/cifar10-train.parquet is absent (pass --data-dir)")
        names.remove("cifar10")

    results: dict[str, dict[str, dict[str, float]]] = {}
    raw: dict[str, dict[str, list[dict[str, float]]]] = {}
    for name in names:
        raw[name] = {"cold": [], "warm": []}
        for _ in range(opts.repeats):
            with tempfile.TemporaryDirectory() as cache:
                for state in ("cold", "warm"):
                    raw[name][state].append(measure(name, data_dir, Path(cache)))
                    print(f"{name} {state}: " + json.dumps(raw[name][state][-1]), flush=True)
        results[name] = {state: medians(samples) for state, samples in raw[name].items()}

    print(f"\nseconds since the process started (median of {opts.repeats})\n")
    print(table(results))
    print()
    for line in ratios(results):
        print(line)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(
        json.dumps(
            {
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": sys.argv,
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                "medians": results,
                "samples": raw,
            },
            indent=1,
        )
    )
    print(f"raw numbers: {opts.out}")


if __name__ == "__main__":
    main()
