"""What the simulator costs on top of the training it simulates.

Three ways to do the same work, timed in one process, one after another:
  plain  - a hand-written PyTorch loop: the full model, Adam, the same batches;
  inproc - the simulator's in-process backend running FedAvg with one client;
  ray    - the same on the Ray backend (one client actor).
FedAvg with one client and one local epoch per round is exactly that loop, so the ratios
inproc/plain and ray/inproc are the simulator's and Ray's overheads.

    python benchmarks/step_overhead.py                  # digits, small CNN
    python benchmarks/step_overhead.py --data cifar10   # CIFAR-10 subset, ResNet-18
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from fslsage_ray.algorithms.client_view import ClientView  # noqa: E402
from fslsage_ray.config import load_config  # noqa: E402
from fslsage_ray.experiment import build_template  # noqa: E402
from fslsage_ray.runtime.allocator import pin_malloc_thresholds, torch_threads  # noqa: E402
from fslsage_ray.seeding import generator  # noqa: E402
from fslsage_ray.simulation import Simulation, prepare  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = {
    "digits": ["model.name=cnn", "algorithm.batch_size=32"],
    "cifar10": [
        "data.name=cifar10",
        f"data.data_dir={REPO.parent / 'shared' / 'data'}",
        "data.train_subset=2000",
        "data.test_subset=500",
        "model.name=resnet18",
        "algorithm.batch_size=64",
    ],
}


def plain_epochs(config, rounds: int) -> list[float]:
    """The reference: the loop a researcher would write by hand."""
    torch.set_num_threads(torch_threads(config.runtime))
    pin_malloc_thresholds()  # the allocator policy every simulator process uses
    p = prepare(config)
    template = build_template(p.world)
    model = torch.nn.Sequential(template.client, template.server)
    o = config.optim
    # The same optimizer the simulator uses (multi-tensor Adam), so like is timed with like.
    opt = torch.optim.Adam(
        model.parameters(),
        lr=o.lr,
        betas=(o.beta1, o.beta2),
        weight_decay=o.weight_decay,
        foreach=True,
    )
    view = ClientView(p.train, p.parts[0], p.world.task)
    gen = generator(config.run.seed, "client", 0)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        model.train()
        for idx in view.shuffled_batches(config.algorithm.batch_size, gen):
            batch = view.batch(idx, gen, torch.device("cpu"))
            loss = F.cross_entropy(model(batch.inputs), batch.targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return times


def simulated_epochs(config, rounds: int, out: Path) -> list[float]:
    table = Simulation(config, run_dir=out, overwrite=True, progress=False).run()
    return table.column("local_s").to_pylist()[:rounds]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(DATA), default="digits")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be >= 2: round 0 is warm-up and is not timed")
    base = [
        *DATA[args.data],
        "algorithm.name=fedavg",
        "algorithm.num_clients=1",
        f"run.rounds={args.rounds}",
        "run.checkpoint_every=0",
        "runtime.actor_num_cpus=1",
        "runtime.server_num_cpus=1",
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {
        "plain": plain_epochs(load_config(None, base), args.rounds),
        "inproc": simulated_epochs(
            load_config(None, [*base, "runtime.backend=inprocess"]), args.rounds, out / "so-in"
        ),
        "ray": simulated_epochs(
            load_config(None, [*base, "runtime.backend=ray"]), args.rounds, out / "so-ray"
        ),
    }
    # The first epoch includes warm-up (allocator, worker start): report the median of the rest.
    median = {k: statistics.median(v[1:]) for k, v in runs.items()}
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"one local epoch ({args.data}), median of rounds 1..{args.rounds - 1}:")
    for name, value in median.items():
        print(f"  {name:>6}: {value * 1000:8.1f} ms")
    print(f"  ratio inproc/plain: {median['inproc'] / median['plain']:.3f}")
    print(f"  ratio ray/inproc:   {median['ray'] / median['inproc']:.3f}")
    print(f"  driver peak RSS: {peak_rss_mib:.0f} MiB")
    result = {
        "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "epochs_s": runs,
        "median_s": median,
        "ratio_inproc_plain": median["inproc"] / median["plain"],
        "ratio_ray_inproc": median["ray"] / median["inproc"],
        "driver_peak_rss_mib": peak_rss_mib,
    }
    (out / f"step_overhead_{args.data}.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
