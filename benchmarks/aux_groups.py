"""Alignment of N AMs: one at a time against one vectorised group (alignment.group_size).

    python benchmarks/aux_groups.py                         # CNN and ResNet-18 AMs, CPU
    python benchmarks/aux_groups.py --models resnet18 --threads 2 --epochs 3
    python benchmarks/aux_groups.py --models resnet18 --device cuda --samples 1000 --epochs 5

Both paths are the project's own: `AlignJob.run` per AM (what group_size=1 does) and
`fit_group` on all of them (group_size=N), from the same job states, in one process with
the same thread count. Prints seconds for each, the ratio group / one-at-a-time, the
largest relative difference of the fitted parameters, and peak RSS. On a GPU both paths
first run once untimed (CUDA's start and cuDNN's choice of kernels stay out of the figures).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fslsage_ray.algorithms.aux_group import fit_group  # noqa: E402
from fslsage_ray.algorithms.fsl_sage import FslSageServer  # noqa: E402
from fslsage_ray.config import Config  # noqa: E402
from fslsage_ray.config.schema import AlignmentConfig  # noqa: E402
from fslsage_ray.models import build_split_model  # noqa: E402
from fslsage_ray.tasks import ImageClassification, ImageSpec, Payload  # noqa: E402

# (model, in_channels, image size): the digits CNN and the CIFAR-10 ResNet-18 split.
SHAPES = {"cnn": (1, 8), "resnet18": (3, 32)}


def _server(
    model: str, num_ams: int, samples: int, epochs: int, batch: int, device: torch.device
) -> FslSageServer:
    channels, size = SHAPES[model]
    task = ImageClassification(
        ImageSpec(255.0, (0.5,) * channels, (0.25,) * channels, False), 10, channels, size
    )
    torch.manual_seed(0)
    split = build_split_model(model, 10, channels, size, aux="two_blocks")
    aux = {cid: split.make_aux() for cid in range(num_ams)}
    alignment = AlignmentConfig(epochs=epochs, batch_size=batch, buffer_size=samples)
    server = FslSageServer(split.server, aux, task, Config(alignment=alignment), device)
    rng = np.random.default_rng(0)
    for cid in range(num_ams):
        z = rng.standard_normal((samples, *split.cut_shape)).astype(np.float32)
        server.process_upload(cid, Payload(z, rng.integers(0, 10, samples)))
    return server


def _timed(fn, device: torch.device):
    """(result, seconds), the device's queued work included."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - t0


def measure(
    model: str, num_ams: int, samples: int, epochs: int, batch: int, device: torch.device
) -> dict:
    server = _server(model, num_ams, samples, epochs, batch, device)
    jobs = server.prepare_jobs(list(range(num_ams)))
    architecture = copy.deepcopy(server.aux[0])

    def one_at_a_time():
        return [job.run(server.aux[job.cid], server.aux_optim[job.cid], "server") for job in jobs]

    if device.type == "cuda":  # warm-up; each job restarts from its own saved state
        one_at_a_time()
        fit_group(architecture, jobs, device)
    one, one_s = _timed(one_at_a_time, device)
    grouped, group_s = _timed(lambda: fit_group(architecture, jobs, device), device)
    diff = max(
        float((a.aux_state[k] - b.aux_state[k]).abs().max() / (a.aux_state[k].abs().max() + 1e-12))
        for a, b in zip(one, grouped, strict=True)
        for k in a.aux_state
        if a.aux_state[k].is_floating_point()
    )
    return {
        "model": model,
        "ams": num_ams,
        "samples": samples,
        "epochs": epochs,
        "device": str(device),
        "one_at_a_time_s": one_s,
        "group_s": group_s,
        "ratio": group_s / one_s,
        "max_rel_param_diff": diff,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,resnet18")
    parser.add_argument("--ams", type=int, default=10)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "aux_groups.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [
        measure(m, args.ams, args.samples, args.epochs, args.batch, device)
        for m in args.models.split(",")
    ]
    print(
        f"{'model':9} {'AMs':>4} {'one at a time':>14} {'group':>8} {'ratio':>6} "
        f"{'max rel diff':>13}"
    )
    for r in rows:
        print(
            f"{r['model']:9} {r['ams']:>4} {r['one_at_a_time_s']:>13.2f}s {r['group_s']:>7.2f}s "
            f"{r['ratio']:>6.2f} {r['max_rel_param_diff']:>13.2e}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"peak RSS {peak:.0f} MiB, {args.threads} thread(s), {platform.machine()}{gpu}")
    Path(args.out).write_text(
        json.dumps(
            {
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "threads": args.threads,
                "rows": rows,
                "peak_rss_mib": peak,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
