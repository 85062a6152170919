"""Scaling study (issue 4): the same training data split over 10, 100 and 1,000 clients.

Splitting a fixed data set over more clients keeps the compute of a round about the same
(the same images go through the same models) but multiplies the per-client work a
simulator adds: calls, uploads, object refs, result records, and one model, optimizer and
auxiliary model per client. Running each client count twice in one process, first in-process
(the reference compute, no Ray) and then on Ray with the default actor sizing, isolates what
Ray and the coordinator cost per client, and what 1,000 resident clients cost in memory.

    python benchmarks/scaling.py                                   # CIFAR-10, 10/100/1000
    python benchmarks/scaling.py --clients 10,20 --rounds 2 --data digits   # a quick try

Targets (issue 4), judged at 1,000 clients: Ray's overhead at most 5 ms per client per
round, and all processes of the Ray session within 16 GiB (summed USS; RSS where USS cannot
be read). Round 0 (the only alignment, and worker start-up) is left out of the timings.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GIB = 2**30
TARGET_CLIENTS = 1000
TARGET_OVERHEAD_MS = 5.0
TARGET_MEMORY_BYTES = 16 * GIB
ROUND_FIELDS = (  # kept per round, per backend
    "round",
    "wall_s",
    "local_s",
    "align_s",
    "eval_s",
    "client_busy_s",
    "server_busy_s",
    "server_busy_frac",
    "uploads",
    "test_acc",
    "train_loss",
)
RAY_TOTALS = (  # kept per memory sample of the Ray session
    "num_processes",
    "ray_rss",
    "ray_uss",
    "ray_pss",
    "workers_rss",
    "workers_uss",
    "driver_rss",
    "system_rss",
    "store_bytes_used",
    "store_primary_bytes",
    "store_num_objects",
)


def _client_counts(text: str) -> list[int]:
    counts = [int(c) for c in text.split(",") if c.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return counts


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=_client_counts, default=[10, 100, 1000])
    parser.add_argument("--data", choices=("cifar10", "digits"), default="cifar10")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--train-subset", type=int, default=10000, help="total training images")
    parser.add_argument("--test-subset", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4, help="round 0 is not timed")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--upload-every", type=int, default=1)
    parser.add_argument("--align-every", type=int, default=1000, help="only round 0 aligns")
    parser.add_argument("--align-epochs", type=int, default=2)
    parser.add_argument("--buffer-size", type=int, default=64)
    parser.add_argument(
        "--sample-every",
        type=float,
        default=1.0,
        help="seconds between memory samples during a run (0: only at round ends)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scaling.json")
    parser.add_argument("--plot", type=Path, default=HERE / "results" / "scaling.png")
    parser.add_argument("overrides", nargs="*", help="extra section.key=value config overrides")
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2: round 0 is not timed")
    if args.align_every < args.rounds:
        print(
            f"note: --align-every {args.align_every} < --rounds: timed rounds include alignment",
            file=sys.stderr,
        )
    return args


def base_overrides(args: argparse.Namespace) -> list[str]:
    """Everything but the client count and the backend, identical for every run."""
    data = [f"data.name={args.data}", f"data.train_subset={args.train_subset}"]
    data.append(f"data.test_subset={args.test_subset}")
    if args.data == "cifar10":
        data.append(f"data.data_dir={args.data_dir}")
    return [
        *data,
        "model.name=cnn",
        "algorithm.name=fsl_sage",
        f"algorithm.batch_size={args.batch_size}",
        f"algorithm.upload_every={args.upload_every}",
        f"alignment.every={args.align_every}",
        f"alignment.epochs={args.align_epochs}",
        f"alignment.buffer_size={args.buffer_size}",
        f"run.rounds={args.rounds}",
        "run.checkpoint_every=0",  # a checkpoint inside the timed loop would be measured
        "run.name=scaling",
        *args.overrides,
    ]


class Sampler:
    """Calls `probe` every `every` seconds on a thread, so peaks inside a round are seen."""

    def __init__(self, probe: Callable[[bool], dict[str, Any]], every: float) -> None:
        self.probe = probe
        self.every = every
        self.samples: list[dict[str, Any]] = []
        self.cost_s = 0.0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.perf_counter()

    def sample(self, at: str) -> None:
        with self._lock:  # the thread and the round-end hook never probe at once
            t0 = time.perf_counter()
            try:
                record = self.probe(at != "timer")  # timer ticks: the cheap kind
            except Exception as exc:  # e.g. Ray shutting down under us; keep the rest
                self.errors.append(f"{at}: {type(exc).__name__}: {exc}")
                return
            self.cost_s += time.perf_counter() - t0
            record.update(at=at, t=t0 - self._t0)
            self.samples.append(record)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sample("timer")

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self.sample("start")
        if self.every > 0:
            self._thread = threading.Thread(target=self._loop, name="scaling-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def own_memory(full: bool = True) -> dict[str, Any]:
    """Memory of this process: the whole in-process simulation lives here."""
    import psutil  # vendored by ray, which main() has imported

    if not full:
        return {"rss": psutil.Process().memory_info().rss, "uss": None}
    info = psutil.Process().memory_full_info()
    return {"rss": info.rss, "uss": info.uss}


class RayMemory:
    """Memory of the Ray session's processes and its object store.

    USS and PSS come from /proc/<pid>/smaps_rollup, which walks a process's page tables:
    about 0.1 s per big process on this machine, taken from the cores the run is using. So
    full samples (USS, PSS, and a fresh look-up of the session's processes) are taken at
    round ends only, when the actors are idle; timer ticks read RSS (statm) and the store,
    and look the processes up again only when the raylet's list of workers changed.
    """

    def __init__(self) -> None:
        self.pids: set[int] = set()
        self.workers: set[int] = set()

    def __call__(self, full: bool = True) -> dict[str, Any]:
        from memory import process_memory, session_pids, store_usage, worker_pids

        workers = worker_pids()  # cheap; it changes when the actors start
        if full or workers != self.workers:
            self.workers, self.pids = workers, session_pids()
        if full:
            procs = [asdict(p) for p in process_memory(self.pids, self.workers)]
        else:
            procs = self._rss_only()
        store = store_usage()

        def total(field: str, role: str | None = None) -> int | None:
            if not full and field != "rss":
                return None
            return sum(p[field] or 0 for p in procs if role in (None, p["role"]))

        return {
            "full": full,
            "num_processes": len(procs),
            "uss_complete": full and all(p["uss"] is not None for p in procs),
            **{f"ray_{f}": total(f) for f in ("rss", "uss", "pss")},
            "workers_rss": total("rss", "worker"),
            "workers_uss": total("uss", "worker"),
            "driver_rss": total("rss", "driver"),
            "system_rss": total("rss", "system"),
            "store_bytes_used": store.bytes_used,
            "store_primary_bytes": store.primary_copy_bytes,
            "store_num_objects": store.num_objects,
            "processes": procs,
        }

    def _rss_only(self) -> list[dict[str, Any]]:
        import psutil

        out = []
        for pid in sorted(self.pids):
            try:
                rss = psutil.Process(pid).memory_info().rss
            except psutil.Error:
                continue  # ended since the last look-up
            role = "driver" if pid == os.getpid() else "worker" if pid in self.workers else "system"
            out.append({"pid": pid, "role": role, "rss": rss})
        return out


def run_backend(overrides: list[str], backend: str, sample_every: float) -> dict[str, Any]:
    """One run; returns its per-round rows, memory samples and timings."""
    from soak import make_sampled_metrics

    from fslsage_ray.config import config_to_dict, load_config, quickstart_path
    from fslsage_ray.simulation import Simulation

    config = load_config(quickstart_path(), [*overrides, f"runtime.backend={backend}"])
    sampler = Sampler(RayMemory() if backend == "ray" else own_memory, sample_every)
    rows: list[dict[str, Any]] = []

    def on_round(rounds_done: int, row: dict[str, Any]) -> None:
        rows.append({k: row[k] for k in ROUND_FIELDS})
        sampler.sample(f"round {row['round']}")
        if rounds_done == config.run.rounds:
            sampler.stop()  # before the backend closes: never probe a Ray shutting down

    t0 = time.perf_counter()
    sim = Simulation(config, progress=False, write_outputs=False)  # data read, Ray started
    setup_s = time.perf_counter() - t0
    sim.metrics = make_sampled_metrics(type(sim.metrics), 1, on_round)
    sampler.start()
    t0 = time.perf_counter()
    try:
        sim.run()
    finally:
        sampler.stop()
    run_s = time.perf_counter() - t0
    result = {
        "backend": backend,
        "config": config_to_dict(config),  # resolved: defaults that may change are recorded
        "describe": sim.backend.describe(),
        "train_samples": sum(sim.prepared.client_sizes),
        "client_sizes_min_max": [min(sim.prepared.client_sizes), max(sim.prepared.client_sizes)],
        "num_batches_total": sum(
            -(-n // config.algorithm.batch_size) for n in sim.prepared.client_sizes
        ),
        "setup_s": setup_s,
        "run_s": run_s,
        "restarts": sim.restarts,
        "rounds": rows,
        "sampler": {"every_s": sample_every, "cost_s": sampler.cost_s, "errors": sampler.errors},
        "_samples": sampler.samples,  # summarised, then dropped, by _summarise_memory
    }
    del sim
    _release_memory()
    return result


def _release_memory() -> None:
    """Hand freed heap back to the OS, so one run's garbage does not count in the next
    run's driver memory (glibc keeps freed small blocks otherwise)."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the next run's driver numbers may include this run's free heap


def _median_timed(rows: list[dict[str, Any]], key: str) -> float:
    timed = [r[key] for r in rows[1:]]  # round 0: alignment and start-up
    return statistics.median(timed) if timed else float("nan")


def _peak(samples: list[dict[str, Any]], key: str) -> int | None:
    values = [s[key] for s in samples if s.get(key) is not None]
    return max(values) if values else None


def _summarise_memory(run: dict[str, Any]) -> dict[str, Any]:
    """Peaks over the run; USS/PSS peaks are over the full samples (run start, round ends)."""
    samples = run.pop("_samples")
    if not samples:
        return {"num_samples": 0}
    if run["backend"] == "inprocess":
        return {
            "num_samples": len(samples),
            "peak_rss": _peak(samples, "rss"),
            "peak_uss": _peak(samples, "uss"),
            "start_rss": samples[0]["rss"],
            "per_sample": samples,
        }
    full = [s for s in samples if s["full"]]
    uss_complete = all(s["uss_complete"] for s in full)
    basis = "ray_uss" if uss_complete else "ray_rss"
    peak = max(full, key=lambda s: s[basis])
    return {
        "num_samples": len(samples),
        "num_full_samples": len(full),
        "basis": "USS" if uss_complete else "RSS (USS unreadable for some process)",
        "peak_total": _peak(full if uss_complete else samples, basis),
        **{f"peak_{k}": _peak(samples, k) for k in RAY_TOTALS},
        "peak_sample_processes": peak["processes"],
        "per_sample": [
            {"at": s["at"], "t": s["t"], **{k: s[k] for k in RAY_TOTALS}} for s in samples
        ],
    }


def compare(inproc: dict[str, Any], ray_run: dict[str, Any], clients: int) -> dict[str, Any]:
    """The derived numbers for one client count."""
    from fslsage_ray.outputs.metrics import TIMING_COLUMNS

    t_in = _median_timed(inproc["rounds"], "wall_s")
    t_ray = _median_timed(ray_run["rounds"], "wall_s")
    learned = [k for k in ROUND_FIELDS if k not in TIMING_COLUMNS]
    same = all(
        {k: a[k] for k in learned} == {k: b[k] for k in learned}
        for a, b in zip(inproc["rounds"], ray_run["rounds"], strict=True)
    )
    return {
        "clients": clients,
        "inproc_round_s": t_in,
        "ray_round_s": t_ray,
        "ratio_ray_inproc": t_ray / t_in,
        "overhead_ms_per_client_round": 1000 * (t_ray - t_in) / clients,
        "same_metrics": same,  # both backends computed the same rounds (ordered uploads)
        **{
            f"{b}_{key}": _median_timed(run["rounds"], key)
            for b, run in (("inproc", inproc), ("ray", ray_run))
            for key in ("local_s", "eval_s", "client_busy_s", "server_busy_s", "server_busy_frac")
        },
    }


def run_clients(args: argparse.Namespace, m: int) -> dict[str, Any]:
    """Both backends for m clients, one after the other, in this process."""
    overrides = [*base_overrides(args), f"algorithm.num_clients={m}"]
    runs = {}
    for backend in ("inprocess", "ray"):
        print(f"{m} clients, {backend}: running {args.rounds} rounds ...", flush=True)
        run = run_backend(overrides, backend, args.sample_every)
        run["memory"] = _summarise_memory(run)
        runs[backend] = run
        walls = " ".join(f"{r['wall_s']:.2f}" for r in run["rounds"])
        print(
            f"  {run['describe']}\n  setup {run['setup_s']:.1f} s, run {run['run_s']:.1f} s, "
            f"s/round {walls}; {run['memory']['num_samples']} memory samples cost "
            f"{run['sampler']['cost_s']:.1f} s",
            flush=True,
        )
    entry = compare(runs["inprocess"], runs["ray"], m)
    entry.update(
        inproc_peak_rss=runs["inprocess"]["memory"].get("peak_rss"),
        inproc_peak_uss=runs["inprocess"]["memory"].get("peak_uss"),
        ray_peak_total=runs["ray"]["memory"].get("peak_total"),
        ray_memory_basis=runs["ray"]["memory"].get("basis"),
        ray_peak_rss=runs["ray"]["memory"].get("peak_ray_rss"),
        ray_peak_pss=runs["ray"]["memory"].get("peak_ray_pss"),
        ray_peak_store=runs["ray"]["memory"].get("peak_store_bytes_used"),
        runs=runs,
    )
    return entry


def verdicts(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    at = next((r for r in results if r["clients"] == TARGET_CLIENTS), None)
    out = []
    for name, value, bound, unit in (
        ("overhead", at and at["overhead_ms_per_client_round"], TARGET_OVERHEAD_MS, "ms"),
        ("memory", at and at["ray_peak_total"], TARGET_MEMORY_BYTES, "bytes"),
    ):
        status = "NOT RUN" if value is None else ("PASS" if value <= bound else "FAIL")
        out.append(
            {
                "target": name,
                "clients": TARGET_CLIENTS,
                "value": value,
                "bound": bound,
                "unit": unit,
                "status": status,
            }
        )
    return out


def _gib(value: float | None) -> str:
    return f"{value / GIB:7.2f}" if value is not None else "    n/a"


def format_table(results: list[dict[str, Any]]) -> str:
    head = (
        f"{'clients':>7} {'inproc s':>9} {'ray s':>8} {'ray/in':>6} {'ms/cl/rd':>9} "
        f"{'srv busy in/ray':>15} {'cl busy in/ray s':>16} {'in RSS':>7} {'ray tot':>7} "
        f"{'ray RSS':>7} {'ray PSS':>7} {'store':>7} same"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r['clients']:>7} {r['inproc_round_s']:>9.3f} {r['ray_round_s']:>8.3f} "
            f"{r['ratio_ray_inproc']:>6.2f} {r['overhead_ms_per_client_round']:>+9.2f} "
            f"{r['inproc_server_busy_frac']:>7.2f}/{r['ray_server_busy_frac']:<7.2f} "
            f"{r['inproc_client_busy_s']:>8.2f}/{r['ray_client_busy_s']:<7.2f} "
            f"{_gib(r['inproc_peak_rss'])} {_gib(r['ray_peak_total'])} {_gib(r['ray_peak_rss'])} "
            f"{_gib(r['ray_peak_pss'])} {_gib(r['ray_peak_store'])} "
            f"{'yes' if r['same_metrics'] else 'NO'}"
        )
    basis = {r["ray_memory_basis"] for r in results}
    return "\n".join(lines) + (
        "\n(s: median wall time of rounds 1..R-1; ms/cl/rd: (ray - inproc) / clients, negative "
        "when Ray's client and server actors overlap work that in-process runs one after the "
        "other; busy: medians of server_busy_frac and client_busy_s (client compute only, "
        "handing uploads over excluded); memory in GiB, peaks over the run: in "
        "RSS = this process in-process, ray tot = sum over the Ray session's processes of "
        f"{' / '.join(sorted(str(b) for b in basis))}, store = object-store bytes; same: "
        "both backends gave identical accuracy and loss)"
    )


def format_verdicts(verdict: list[dict[str, Any]]) -> str:
    lines = []
    for v in verdict:
        if v["unit"] == "ms":
            what = f"Ray overhead per client per round <= {v['bound']:g} ms"
            got = "" if v["value"] is None else f": {v['value']:+.2f} ms"
        else:
            what = f"Ray session memory <= {v['bound'] / GIB:g} GiB"
            got = "" if v["value"] is None else f": {v['value'] / GIB:.2f} GiB"
        lines.append(f"target at {v['clients']} clients, {what}{got}: {v['status']}")
    return "\n".join(lines)


def _loopback_only_env() -> None:
    """Before ray is first imported: Ray reads its local-only switch at import."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if not os.environ.get("RAY_ADDRESS"):
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _loopback_only_env()
    sys.path.insert(0, str(HERE))  # for memory, soak and plot_scaling, run from anywhere
    import ray
    import torch
    from plot_scaling import plot
    from soak import machine

    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "scaling",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": {"ray": ray.__version__, "torch": torch.__version__},
        "overrides": base_overrides(args),
        "complete": False,
        "results": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for m in args.clients:  # saved after every client count: a crash keeps the finished ones
        result["results"].append(run_clients(args, m))
        result["total_s"] = time.perf_counter() - t0
        args.out.write_text(json.dumps(result, indent=1, default=str))
    result["verdict"] = verdicts(result["results"])
    result["complete"] = True
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(format_table(result["results"]))
    print(format_verdicts(result["verdict"]))
    plot(result, args.plot)
    print(f"results: {args.out}, plot: {args.plot}")
    return 1 if any(v["status"] == "FAIL" for v in result["verdict"]) else 0


if __name__ == "__main__":
    sys.exit(main())
