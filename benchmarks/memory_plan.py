"""The memory plan (`fslsage-ray plan --memory`) against what a real run holds, part by part.

    python benchmarks/memory_plan.py [quickstart|tiny_gpt2|cifar_resnet18 ...] [--ray]

How it measures (one process, the in-process backend's own ClientHost and ServerHost, after
one warm-up round so every client, optimizer moment, AM and buffer exists):
- resident state: every tensor the garbage collector can see, each storage counted once
  (parameters, buffers, optimizer moments, AMs, alignment buffers, server copies), after
  the warm-up round minus before the hosts were built. RSS would be noisier than the
  parts: glibc keeps freed memory, and Python's and torch's pools grow in steps.
- one client step, one server step, an alignment (every participant's g* and fitting), an
  evaluation: the most bytes PyTorch's CPU allocator held at once above its level before,
  from the profiler's record of every allocation and free (torch's CPU allocator keeps no
  statistics, and tracemalloc does not see it). This counts activations autograd keeps,
  gradients, the optimizer's temporaries and every intermediate, measured on the real
  batch, unlike the plan, which scales a 2- and 4-sample probe.
- with --ray, the quick start on Ray: each actor process's peak resident memory (VmHWM from
  /proc, read while the run is alive) against the plan's CPU total for its kind.
Each row: plan, measured, measured/plan. Same machine, same torch for both.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fslsage_ray.config import load_config, quickstart_path  # noqa: E402
from fslsage_ray.memory import plan_memory  # noqa: E402
from fslsage_ray.memory.measure_steps import KeepingChannel  # noqa: E402
from fslsage_ray.memory.probe import allocation_peak  # noqa: E402

MIB = 2**20
DATA = ROOT.parent / "shared" / "data"
TINY_GPT2 = [
    "data.name=e2e",
    f"data.data_dir={DATA / 'e2e'}",
    "data.seq_len=64",
    "data.vocab_size=1024",
    "data.train_subset=300",
    "data.test_subset=60",
    "model.name=gpt2",
    "model.gpt2.n_layer=2",
    "model.gpt2.n_embd=32",
    "model.gpt2.n_head=2",
    "model.gpt2.n_positions=64",
    "model.gpt2.aux_blocks=1",
    "model.gpt2.lora_rank=0",
    "optim.name=adamw",
    "optim.weight_decay=0.01",
    "algorithm.num_clients=3",
    "algorithm.batch_size=10",
    "algorithm.upload_every=2",
    "alignment.every=2",
    "alignment.epochs=3",
    "alignment.batch_size=20",
    "alignment.buffer_size=40",
    "run.eval_batch_size=30",
]  # tests/lm/lm_helpers.py TINY, the settings that change memory
CASES = {
    "quickstart": (None, []),
    "tiny_gpt2": (None, TINY_GPT2),
    "cifar_resnet18": (
        ROOT / "configs" / "cifar10" / "fsl_sage_cpu_small.yaml",
        [
            f"data.data_dir={DATA}",
            "algorithm.num_clients=4",
            "data.train_subset=256",
            "data.test_subset=256",
            "alignment.buffer_size=64",
            "alignment.batch_size=64",
        ],
    ),
}
ALGORITHMS = ("fsl_sage", "sflv1", "fedavg")


def tensor_bytes() -> int:
    """Bytes of every distinct storage behind a tensor the garbage collector tracks."""
    gc.collect()
    seen: dict[int, int] = {}
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor) and obj.device.type == "cpu":
            storage = obj.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def _phase(actor, phase: str) -> int:
    return sum(p.nbytes for p in actor.parts if p.phase == phase and p.on_device)


def measure(config) -> dict[str, int]:
    """Measured bytes per part group on the in-process backend (see module docstring)."""
    from fslsage_ray.algorithms.registry import get_algorithm
    from fslsage_ray.experiment import WorldSpec, build_template, initial_aux, load_data, partition
    from fslsage_ray.runtime.inprocess import InProcessBackend

    algorithm = get_algorithm(config)
    data = load_data(config)
    parts_idx = partition(config, data.train_keys)
    world = WorldSpec(config, data.task)
    before = tensor_bytes()
    backend = InProcessBackend("cpu")  # its client host and server host, driven as a run does
    backend.start(world, data.train, data.test, parts_idx)
    host, server = backend.clients[0].host, backend.server.host
    template = build_template(world)
    parts = algorithm.initial_parts(template, initial_aux(template, config.run.seed))
    del template
    cids = list(range(len(parts_idx)))
    for _ in range(config.run.rounds):  # warm-up: every store entry and optimizer moment exists
        batches = backend.num_batches()
        backend.start_round(parts, algorithm.expected_uploads(batches), cids)
        backend.run_local(0, None)
        if algorithm.server_holds_aux:
            backend.run_server_jobs(max(batches.values()))
        backend.finish_round()
    out = {"resident": tensor_bytes() - before}
    client = host.store.get(0)
    client.start_round(parts)
    keep = KeepingChannel()
    client.seed_step()
    with allocation_peak() as peak:
        client.step(0, keep)
        client.end_round()
    out["client step"] = peak[0]
    if algorithm.uses_server and keep.payload is not None:
        with allocation_peak() as peak:
            server.server.process_upload(0, keep.payload)
        out["server step"] = peak[0]
        if algorithm.server_holds_aux:
            with allocation_peak() as peak:
                server.run_jobs(cids)
            out["alignment"] = peak[0]
    with allocation_peak() as peak:
        server.evaluate(parts["full" if "full" in parts else "client"])
    out["evaluation"] = peak[0]
    return out


def planned(config) -> dict[str, int]:
    """The same groups from the plan: one client actor hosting every client, on CPU."""
    runtime = replace(config.runtime, backend="ray", max_inflight_uploads=1, eval_on="server")
    plan = plan_memory(
        replace(config, runtime=runtime), groups=[tuple(range(config.algorithm.num_clients))]
    )
    client = plan.actor("client actor")
    resident = sum(p.nbytes for p in client.parts if p.phase == "resident" and p.on_device)
    out = {"client step": _phase(client, "step")}
    if any(a.kind == "server actor" for a in plan.actors):
        srv = plan.actor("server actor")
        # the server's template and eval client are the in-process host's too
        resident += sum(p.nbytes for p in srv.parts if p.phase == "resident" and p.on_device)
        out["server step"] = _phase(srv, "step")
        jobs = sum(p.nbytes for p in srv.parts if p.name.startswith("alignment jobs"))
        targets = sum(p.nbytes for p in srv.parts if p.name.startswith("alignment: computing"))
        fit = sum(p.nbytes for p in client.parts if p.name.startswith("alignment: fitting"))
        if jobs:  # in one process g* is computed for every job first, then each AM is fitted
            out["alignment"] = jobs + max(targets, fit)
        out["evaluation"] = sum(
            p.nbytes for p in srv.parts if p.name.startswith("evaluation chunk")
        )
    else:
        out["evaluation"] = sum(
            p.nbytes for p in client.parts if p.name.startswith("evaluation chunk")
        )
    out["resident"] = resident
    return dict(sorted(out.items(), key=lambda kv: list(ORDER).index(kv[0])))


ORDER = ("resident", "client step", "server step", "alignment", "evaluation")


def config_for(case: str, algorithm: str, extra: list[str] = ()):
    path, overrides = CASES[case]
    return load_config(
        path or quickstart_path(),
        [
            *overrides,
            f"algorithm.name={algorithm}",
            "runtime.backend=inprocess",
            "runtime.device=cpu",
            "run.rounds=2",
            "alignment.epochs=1",
            *extra,
        ],
    )


def compare(case: str, algorithm: str, extra: list[str] = ()) -> list[dict]:
    config = config_for(case, algorithm, list(extra))
    plan, got = planned(config), measure(config)
    return [
        {
            "case": case,
            "algorithm": algorithm,
            "part": k,
            "plan": plan[k],
            "measured": got[k],
            "ratio": got[k] / plan[k] if plan[k] else float("nan"),
        }
        for k in ORDER
        if k in plan and k in got
    ]


def ray_peaks(algorithm: str) -> list[dict]:
    """The quick start on Ray for 2 rounds: every actor's VmHWM against the plan's total."""
    import psutil

    from fslsage_ray.simulation import Simulation

    config = load_config(
        quickstart_path(),
        [
            f"algorithm.name={algorithm}",
            "run.rounds=2",
            "runtime.device=cpu",
            "run.checkpoint_every=0",
        ],
    )
    plan = plan_memory(config)
    peaks: dict[str, int] = {}
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.5):
            for proc in psutil.process_iter(["pid", "cmdline"]):
                title = " ".join(proc.info["cmdline"] or [])
                for kind, marker in (
                    ("client actor", "ray::ClientActor"),
                    ("server actor", "ray::ServerActor"),
                ):
                    if title.startswith(marker):
                        try:
                            status = Path(f"/proc/{proc.info['pid']}/status").read_text()
                        except OSError:
                            continue
                        hwm = next(
                            int(line.split()[1]) * 1024
                            for line in status.splitlines()
                            if line.startswith("VmHWM")
                        )
                        peaks[kind] = max(peaks.get(kind, 0), hwm)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        Simulation(config, Path(tmp) / "run", progress=False).run()
    stop.set()
    thread.join()
    return [
        {
            "case": "quickstart (Ray)",
            "algorithm": algorithm,
            "part": f"{kind} VmHWM",
            "plan": plan.actor(kind).cpu_total,
            "measured": got,
            "ratio": got / plan.actor(kind).cpu_total,
        }
        for kind, got in sorted(peaks.items())
    ]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", default=list(CASES))
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS))
    parser.add_argument("--ray", action="store_true", help="also actor peaks on Ray (quick start)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    started = time.perf_counter()
    for case in args.cases:
        for algorithm in args.algorithms.split(","):
            rows += compare(case, algorithm)
    if args.ray:
        for algorithm in args.algorithms.split(","):
            rows += ray_peaks(algorithm)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("| case | algorithm | part | plan MiB | measured MiB | measured/plan |")
        print("|---|---|---|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['case']} | {r['algorithm']} | {r['part']} | {r['plan'] / MIB:.2f} | "
                f"{r['measured'] / MIB:.2f} | {r['ratio']:.2f} |"
            )
        print(f"({time.perf_counter() - started:.0f} s)")
    return rows


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
