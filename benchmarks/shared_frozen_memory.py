"""Resident memory of one process hosting 1, 10, 50 LoRA clients: one frozen base or one each.

    python benchmarks/shared_frozen_memory.py [--algorithm sflv2] [--shared 1 10 50]
        [--separate 1 10] [--config configs/e2e/gpt2_medium_lora.yaml] [--out FILE.json]

Each measurement is a fresh Python process (so no allocator state carries over) that loads
the config's data, builds the in-process backend's own ClientHost (the object a Ray client
actor holds) for N clients, builds every client and starts a round on each (the global
parts loaded, as a run does), then reads its resident set size (VmRSS, after a garbage
collection) and its peak (VmHWM). "separate" turns the sharing off
(models.frozen.SHARE_FROZEN, the switch the tests use), which is how every client held its
own frozen base before. Random initial weights, no download. The host's template (the
whole model, built once per process) is part of every figure, as in a real actor.

Prints a table (MiB) and the ratio of N clients to one client with sharing; the separate
figure at the largest shared N is extrapolated linearly from the separate runs (it would
not fit this machine's share of memory).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPT2_VOCAB = 50257


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure_one(config_path: str, algorithm: str, clients: int, share: bool) -> dict:
    """In this process: N clients on one ClientHost; its memory."""
    import numpy as np
    import torch

    from fslsage_ray.config import load_config
    from fslsage_ray.experiment import WorldSpec, load_data
    from fslsage_ray.models import frozen
    from fslsage_ray.runtime.client_host import ClientHost

    frozen.SHARE_FROZEN = share
    config = load_config(
        config_path,
        [
            f"algorithm.name={algorithm}",
            f"algorithm.num_clients={clients}",
            f"data.train_subset={8 * clients}",  # one batch of 8 rows each: data stays small
            "data.test_subset=8",
        ],
    )
    data = load_data(config)
    # GPT-2's own vocabulary, as with the pretrained tokenizer (model.gpt2.pretrained_path):
    # the BPE trained on the data has at most data.vocab_size = 4,096 tokens, and the 206 MB
    # embedding of the real setting would shrink to 17 MB. The data's ids stay below it.
    world = WorldSpec(config, dataclasses.replace(data.task, vocab_size=GPT2_VOCAB))
    rows = np.arange(8 * clients)
    assignment = {cid: rows[8 * cid : 8 * cid + 8] for cid in range(clients)}
    gc.collect()
    before = _status_kib("VmRSS")
    t0 = time.perf_counter()
    host = ClientHost(world, data.train, assignment, torch.device("cpu"))
    parts = host.store.get(0).parts()  # the global parts a round starts from
    for cid in range(clients):
        host.store.get(cid).start_round(parts)
    built_s = time.perf_counter() - t0
    gc.collect()
    return {
        "algorithm": algorithm,
        "clients": clients,
        "shared": share,
        "rss_mib": _status_kib("VmRSS") / 1024,
        "peak_rss_mib": _status_kib("VmHWM") / 1024,
        "rss_before_host_mib": before / 1024,
        "build_s": round(built_s, 1),
    }


def _run_child(args: argparse.Namespace, clients: int, share: bool) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(clients),
        "--share" if share else "--no-share",
        "--algorithm",
        args.algorithm,
        "--config",
        args.config,
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"  {args.algorithm} {clients:>3} clients, {'shared' if share else 'separate'}: "
        f"{result['rss_mib']:.0f} MiB",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs/e2e/gpt2_medium_lora.yaml"))
    parser.add_argument("--algorithm", default="sflv2")
    parser.add_argument("--shared", type=int, nargs="*", default=[1, 10, 50])
    parser.add_argument("--separate", type=int, nargs="*", default=[1, 10])
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--share", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    if args.child is not None:  # one measurement, in this fresh process
        print(json.dumps(measure_one(args.config, args.algorithm, args.child, args.share)))
        return 0

    shared = {n: _run_child(args, n, True) for n in args.shared}
    separate = {n: _run_child(args, n, False) for n in args.separate}
    table = _table(args.algorithm, shared, separate)
    print("\n".join(table))
    if args.out:
        Path(args.out).write_text(
            json.dumps({"shared": list(shared.values()), "separate": list(separate.values())})
        )
    return 0


def _table(algorithm: str, shared: dict[int, dict], separate: dict[int, dict]) -> list[str]:
    counts = sorted({*shared, *separate})
    lines = [
        f"{algorithm}: resident memory of one process (RSS, MiB)",
        "| clients | one frozen base (shared) | one base per client (separate) |",
        "|---|---|---|",
    ]
    slope = None
    if len(separate) >= 2:
        (n0, r0), (n1, r1) = [(n, separate[n]["rss_mib"]) for n in sorted(separate)[:2]]
        slope = (r1 - r0) / (n1 - n0)
    for n in counts:
        s = f"{shared[n]['rss_mib']:.0f}" if n in shared else "-"
        if n in separate:
            p = f"{separate[n]['rss_mib']:.0f}"
        elif slope is not None:
            n0 = min(separate)
            p = f"~{separate[n0]['rss_mib'] + slope * (n - n0):.0f} (extrapolated)"
        else:
            p = "-"
        lines.append(f"| {n} | {s} | {p} |")
    if 1 in shared:
        one = shared[1]["rss_mib"]
        for n in sorted(shared):
            if n != 1:
                lines.append(
                    f"ratio {n} clients / 1 client (shared): {shared[n]['rss_mib'] / one:.2f}"
                )
    if slope is not None:
        lines.append(f"each more client, separate: {slope:.0f} MiB")
    if len(shared) >= 2:
        a, b = sorted(shared)[:1] + sorted(shared)[-1:]
        per = (shared[b]["rss_mib"] - shared[a]["rss_mib"]) / (b - a)
        lines.append(f"each more client, shared: {per:.1f} MiB")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
