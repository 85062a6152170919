"""The floor (issue 12): a plain PyTorch loop doing our FedAvg and FSL-SAGE arithmetic.

One process, every core (`torch.set_num_threads(os.cpu_count())`), no simulator and no Ray:
the loop a researcher would write by hand for the same rounds, with the project's data,
models, optimizer, gradient functions and averaging (`workload.py`), so that only the
machinery differs. Then, in the same run, `fslsage-ray run` does the same rounds (the CLI, a
private Ray, the default layout) and each figure is printed as a ratio to the floor's:

- FedAvg (no augmentation): each client trains the whole ResNet-18 for one epoch from the
  global weights with its own persistent Adam; the server averages (n_i/n); evaluation on
  the test images. Target: ours per round at most 1.10x the floor.
- FSL-SAGE, ordinary round (the config's augmentation): each client's part steps through its
  AM's gradient estimate; every q-th batch goes up and the server part takes one step on
  it; client parts averaged; evaluation. Target: at most 1.10x the floor.
- FSL-SAGE alignment (round 0, after the first upload slot, as ours): for each client in
  turn, the server's cut-layer gradients g* on its buffer, then `alignment.epochs` epochs of
  fitting its AM (second-order), with the estimation error before and after. Target: ours
  at most 0.5x the floor's one-after-another time.

    python benchmarks/floor.py                          # 3 rounds of each, 100-epoch alignment
    python benchmarks/floor.py --repeats 3              # medians of 3 runs of everything
    python benchmarks/floor.py --align-epochs 10        # a shorter alignment, both sides
    python benchmarks/floor.py --quick                  # tiny sizes: does it work?

"Per round" is the median wall time of the rounds after the first (warm-up) that do not
align, evaluation included, on both sides.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # ours, proctree, workload; this fslsage_ray
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402
from ours import (  # noqa: E402
    Measured,
    fmt,
    gib,
    largest,
    machine,
    median_of,
    ratio,
    run_ours,
    stamp,
    verdict,
)
from proctree import psutil_module  # noqa: E402
from workload import (  # noqa: E402
    DEFAULT_DATA,
    Sizes,
    Workload,
    evaluate,
    full_model,
    overrides,
    train_epoch,
    workload_config,
)

from fslsage_ray.algorithms.aggregate import sample_weights, weighted_average  # noqa: E402
from fslsage_ray.algorithms.client_view import ClientView  # noqa: E402
from fslsage_ray.algorithms.gradients import (  # noqa: E402
    alignment_loss,
    gradient_estimate,
    relative_error,
    true_cut_gradient,
)
from fslsage_ray.experiment import initial_aux  # noqa: E402
from fslsage_ray.runtime.allocator import pin_malloc_thresholds  # noqa: E402

CPU = torch.device("cpu")
TARGETS = {"fedavg": 1.10, "fsl_sage": 1.10, "alignment": 0.5}  # ours / floor, at most
QUICK = Sizes(clients=2, samples_per_client=64, test_size=100, rounds=2)
QUICK_ALIGN_EPOCHS = 2


@dataclass
class RoundTime:
    wall_s: float
    local_s: float
    align_s: float
    eval_s: float
    test_acc: float


@dataclass
class FloorRun:
    """One plain run of one algorithm: its rounds and this process's memory after it."""

    algorithm: str
    rounds: list[RoundTime] = field(default_factory=list)
    peak_rss: int = 0  # this process's peak so far (getrusage)
    uss_after: int = 0

    def per_round(self) -> float:
        """Median wall time of the ordinary rounds: after the first, without alignment."""
        walls = [r.wall_s for r in self.rounds[1:] if not r.align_s]
        return statistics.median(walls) if walls else float("nan")


def _memory(run: FloorRun) -> None:
    run.peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    run.uss_after = psutil_module().Process().memory_full_info().uss


def floor_fedavg(w: Workload, views: list[ClientView], test, rounds: int) -> FloorRun:
    """FedAvg by hand: per client its own model copy and persistent Adam, as ours keeps."""
    template = w.template()
    global_model = full_model(template)
    batch = w.config.algorithm.batch_size
    models = [full_model(template) for _ in views]
    optims = [
        w.optimizer(m.parameters(), v.num_batches(batch))
        for m, v in zip(models, views, strict=True)
    ]
    gens = [w.client_generator(cid) for cid in range(len(views))]
    weights = sample_weights([v.num_samples for v in views])
    run = FloorRun("fedavg")
    for _ in range(rounds):
        t0 = time.perf_counter()
        state = global_model.state_dict()
        for model, opt, view, gen in zip(models, optims, views, gens, strict=True):
            model.load_state_dict(state)
            train_epoch(model, opt, view, gen, batch)
        global_model.load_state_dict(weighted_average([m.state_dict() for m in models], weights))
        t1 = time.perf_counter()
        metrics = evaluate(w.task, global_model[0], global_model[1], test, _eval_batch(w))
        t2 = time.perf_counter()
        run.rounds.append(RoundTime(t2 - t0, t1 - t0, 0.0, t2 - t1, metrics["test_acc"]))
    _memory(run)
    return run


def _eval_batch(w: Workload) -> int:
    return w.config.run.eval_batch_size


class SageClient:
    """One FSL-SAGE client of the plain loop: its part, Adam, AM, RNG and batches."""

    def __init__(self, w: Workload, cid: int, view: ClientView, template, aux) -> None:
        self.view = view
        self.model = copy.deepcopy(template.client)
        batch = w.config.algorithm.batch_size
        self.optimizer = w.optimizer(self.model.parameters(), view.num_batches(batch))
        self.aux = aux
        self.aux_optimizer = w.aux_optimizer(aux.parameters())
        self.gen = w.client_generator(cid)
        self.batches: list[Any] = []
        self.buffer: list[tuple[torch.Tensor, torch.Tensor]] = []  # on the server: (z, y)


class SageServer:
    def __init__(self, w: Workload, template, uploads_per_round: int) -> None:
        self.model = copy.deepcopy(template.server)
        self.optimizer = w.optimizer(self.model.parameters(), uploads_per_round)
        self.task = w.task

    def step(self, z: torch.Tensor, y: torch.Tensor) -> None:
        """One optimizer step on one upload, as FslSageServer.process_upload."""
        self.model.train()
        loss = self.task.loss(self.model(z.clone()), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def _keep(buffer: list[tuple[torch.Tensor, torch.Tensor]], capacity: int) -> None:
    """The newest `capacity` samples (FIFO), as AlignmentBuffer."""
    z = torch.cat([b[0] for b in buffer])[-capacity:]
    y = torch.cat([b[1] for b in buffer])[-capacity:]
    buffer[:] = [(z, y)]


def sage_step(c: SageClient, s: SageServer, it: int, q: int, capacity: int) -> None:
    """Client c's iteration `it`: forward, maybe upload (one server step), step through g_hat."""
    idx = c.batches[it]
    batch = c.view.batch(idx, c.gen, CPU)
    smashed = c.model(batch.inputs)
    if it % q == 0:
        z = smashed.detach().clone()
        s.step(z, batch.targets)
        c.buffer.append((z, batch.targets))
        _keep(c.buffer, capacity)
    g_hat, _ = gradient_estimate(c.aux, smashed, batch.targets, c.view.task)
    c.optimizer.zero_grad(set_to_none=True)
    smashed.backward(g_hat)
    c.optimizer.step()


def align(c: SageClient, s: SageServer, epochs: int, batch_size: int) -> None:
    """g* with the current server model, then fit the AM to it (as FslSageServer._chunks and
    fit_aux_model), error before and after included."""
    task = c.view.task
    z_all, y_all = c.buffer[0]
    s.model.train()
    chunks = []
    for start in range(0, len(y_all), batch_size):
        z, y = z_all[start : start + batch_size], y_all[start : start + batch_size]
        g_star, _ = true_cut_gradient(s.model, z, y, task)
        chunks.append((z, y, g_star))

    def error() -> float:
        err, norm = 0.0, 0.0
        for z, y, g_star in chunks:
            e, n = relative_error(gradient_estimate(c.aux, z, y, task)[0], g_star)
            err, norm = err + e, norm + n
        return err / norm if norm > 0 else float("nan")

    c.aux.train()
    error()
    for _ in range(epochs):
        for z, y, g_star in chunks:
            loss = alignment_loss(c.aux, z, y, g_star, task)
            c.aux_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            c.aux_optimizer.step()
    error()


def floor_fsl_sage(w: Workload, views: list[ClientView], test, rounds: int) -> FloorRun:
    """FSL-SAGE by hand: round t aligns when t % alignment.every == 0, after the round's
    first upload slot (it = 0) of every client, one client after another."""
    cfg = w.config
    template = w.template()
    q, batch = cfg.algorithm.upload_every, cfg.algorithm.batch_size
    al = cfg.alignment
    clients = [
        SageClient(w, cid, v, template, initial_aux(template, cfg.run.seed))
        for cid, v in enumerate(views)
    ]
    uploads = sum(len(range(0, v.num_batches(batch), q)) for v in views)
    server = SageServer(w, template, uploads)
    global_client = copy.deepcopy(template.client)
    weights = sample_weights([v.num_samples for v in views])
    run = FloorRun("fsl_sage")
    for t in range(rounds):
        t0 = time.perf_counter()
        state = global_client.state_dict()
        for c in clients:
            c.model.load_state_dict(state)
            c.model.train()
            c.aux.train()
            c.batches = c.view.shuffled_batches(batch, c.gen)
        aligning = t % al.every == 0
        align_s = 0.0
        for c in clients:
            for it in range(1 if aligning else len(c.batches)):
                sage_step(c, server, it, q, al.buffer_size)
        if aligning:
            a0 = time.perf_counter()
            for c in clients:
                align(c, server, al.epochs, al.batch_size)
            align_s = time.perf_counter() - a0
            for c in clients:
                for it in range(1, len(c.batches)):
                    sage_step(c, server, it, q, al.buffer_size)
        global_client.load_state_dict(
            weighted_average([c.model.state_dict() for c in clients], weights)
        )
        t1 = time.perf_counter()
        metrics = evaluate(w.task, global_client, server.model, test, _eval_batch(w))
        t2 = time.perf_counter()
        run.rounds.append(
            RoundTime(t2 - t0, t1 - t0 - align_s, align_s, t2 - t1, metrics["test_acc"])
        )
    _memory(run)
    return run


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=Sizes.rounds, help=">= 2")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each; medians reported")
    parser.add_argument("--clients", type=int, default=Sizes.clients)
    parser.add_argument("--samples-per-client", type=int, default=Sizes.samples_per_client)
    parser.add_argument("--test-size", type=int, default=Sizes.test_size)
    parser.add_argument(
        "--align-epochs", type=int, default=None, help="default: the config's (100)"
    )
    parser.add_argument("--quick", action="store_true", help=f"tiny sizes: {QUICK}, 2 epochs")
    parser.add_argument("--parts", default="fedavg,fsl_sage", help="comma-separated")
    parser.add_argument("--no-ours", action="store_true", help="the floor only, no ratios")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sample-every", type=float, default=0.2, help="our run: seconds")
    parser.add_argument("--uss-every", type=float, default=5.0, help="our run: USS sweeps, s")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per run of ours, seconds")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "floor.json")
    parser.add_argument("--echo", action="store_true", help="show our runs' output")
    parser.add_argument("overrides", nargs="*", help="extra section.key=value, both sides")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.clients = QUICK.rounds, QUICK.clients
        args.samples_per_client, args.test_size = QUICK.samples_per_client, QUICK.test_size
        if args.align_epochs is None:
            args.align_epochs = QUICK_ALIGN_EPOCHS
    try:
        args.sizes = Sizes(args.clients, args.samples_per_client, args.test_size, args.rounds)
    except ValueError as err:
        parser.error(str(err))
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(args.parts) - {"fedavg", "fsl_sage"})
    if unknown or not args.parts:
        parser.error(f"--parts takes fedavg and/or fsl_sage, got {unknown or 'nothing'}")
    if args.rounds < 2:
        parser.error("--rounds must be >= 2: the first round is warm-up (and alignment)")
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1")
    if args.align_epochs is not None and args.align_epochs < 0:
        parser.error("--align-epochs must be >= 0")
    if not (args.data_dir / "cifar10-train.parquet").is_file():
        parser.error(f"no CIFAR-10 parquet files in {args.data_dir} (see ../shared/data/README.md)")
    return args


def part_overrides(args: argparse.Namespace, part: str) -> list[str]:
    """FedAvg without augmentation (issue 12's FedAvg runs); FSL-SAGE with the config's."""
    extra = list(args.overrides)
    if args.align_epochs is not None:
        extra.append(f"alignment.epochs={args.align_epochs}")
    augment = False if part == "fedavg" else None
    return overrides(args.sizes, args.data_dir.resolve(), part, augment, extra)


def run_floor(args: argparse.Namespace, part: str) -> FloorRun:
    w = Workload(workload_config(part_overrides(args, part)))
    views, test = w.all_views(), w.test_arrays()
    if part == "fedavg":
        return floor_fedavg(w, views, test, args.rounds)
    return floor_fsl_sage(w, views, test, args.rounds)


def summarise(part: str, floors: list[FloorRun], ours: list[Measured]) -> dict[str, Any]:
    s: dict[str, Any] = {
        "floor_per_round_s": median_of([f.per_round() for f in floors]),
        "floor_peak_rss": median_of([f.peak_rss for f in floors]),
        "floor_final_acc": median_of([f.rounds[-1].test_acc for f in floors]),
        "ours_per_round_s": median_of([m.per_round() for m in ours]),
        "ours_peak_uss": median_of([m.peak_uss for m in ours]),
        "ours_final_acc": median_of([m.final_acc() for m in ours]),
    }
    s["ratio"] = ratio(s["ours_per_round_s"], s["floor_per_round_s"])
    s["verdict"] = verdict(s["ratio"], TARGETS[part])
    if part == "fsl_sage":
        s["floor_align_s"] = median_of([f.rounds[0].align_s for f in floors])
        s["ours_align_s"] = median_of([m.rounds[0].get("align_s") for m in ours if m.rounds])
        s["align_ratio"] = ratio(s["ours_align_s"], s["floor_align_s"])
        s["align_verdict"] = verdict(s["align_ratio"], TARGETS["alignment"])
    return s


def format_report(result: dict[str, Any]) -> str:
    lines = [
        f"{result['sizes']}, {result['threads']} threads in the floor; medians of "
        f"{result['repeats']} run(s)",
        "",
        f"{'':34} {'floor':>9} {'fslsage-ray':>12} {'ours/floor':>10} target",
    ]
    for part, s in result["summary"].items():
        label = "FedAvg s per round" if part == "fedavg" else "FSL-SAGE s per ordinary round"
        target = f"<= {TARGETS[part]:g}: {s['verdict']}"
        lines.append(
            f"{label:34} {fmt(s['floor_per_round_s']):>9} {fmt(s['ours_per_round_s']):>12} "
            f"{fmt(s['ratio']):>10} {target}"
        )
        if part == "fsl_sage":
            target = f"<= {TARGETS['alignment']:g}: {s['align_verdict']}"
            lines.append(
                f"{'FSL-SAGE alignment of all AMs, s':34} {fmt(s['floor_align_s']):>9} "
                f"{fmt(s['ours_align_s']):>12} {fmt(s['align_ratio']):>10} {target}"
            )
        lines.append(
            f"{'  final test accuracy':34} {fmt(s['floor_final_acc'], '.3f'):>9} "
            f"{fmt(s['ours_final_acc'], '.3f'):>12}"
        )
        lines.append(
            f"{'  peak memory (floor RSS, ours USS)':34} {gib(s['floor_peak_rss']):>9} "
            f"{gib(s['ours_peak_uss']):>12}"
        )
    return "\n".join(lines)


def _round_line(walls: Sequence[float], aligns: Sequence[float | None]) -> str:
    text = " ".join(f"{x:.2f}" for x in walls)
    if aligns and aligns[0]:
        text += f" (round 0 aligned for {aligns[0]:.2f} s)"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    pin_malloc_thresholds()  # the allocator policy every simulator process uses
    result: dict[str, Any] = {
        "benchmark": "floor",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": stamp(),
        "machine": machine(),
        "sizes": str(args.sizes),
        "align_epochs": args.align_epochs,
        "threads": args.threads,
        "repeats": args.repeats,
        "runs": {},
        "summary": {},
    }
    floors: dict[str, list[FloorRun]] = {p: [] for p in args.parts}
    ours: dict[str, list[Measured]] = {p: [] for p in args.parts}
    with tempfile.TemporaryDirectory(prefix="floor_") as tmp:
        for i in range(args.repeats):
            for part in args.parts:
                print(f"run {i + 1}/{args.repeats}: {part}, plain loop ...", flush=True)
                f = run_floor(args, part)
                line = _round_line([r.wall_s for r in f.rounds], [r.align_s for r in f.rounds])
                print(f"  s per round {line}; peak RSS {gib(f.peak_rss)}", flush=True)
                floors[part].append(f)
                if args.no_ours:
                    continue
                print(f"run {i + 1}/{args.repeats}: {part}, fslsage-ray run ...", flush=True)
                m, tree = run_ours(
                    part_overrides(args, part),
                    Path(tmp) / f"{part}-{i}",
                    args.sample_every,
                    args.uss_every,
                    args.timeout,
                    args.echo,
                )
                if m.returncode != 0 or len(m.rounds) != args.rounds:
                    print(tree.tail(60), file=sys.stderr)
                    raise SystemExit(f"our {part} run failed (exit {m.returncode}); see above")
                line = _round_line(
                    [r["wall_s"] for r in m.rounds], [r.get("align_s") for r in m.rounds]
                )
                print(
                    f"  s per round {line}; peak USS {gib(m.peak_uss)} (largest, GiB: "
                    f"{largest(m)})",
                    flush=True,
                )
                ours[part].append(m)
    result["runs"] = {
        p: {
            "floor": [vars(f) | {"rounds": [vars(r) for r in f.rounds]} for f in floors[p]],
            "ours": [vars(m) for m in ours[p]],
        }
        for p in args.parts
    }
    result["summary"] = {p: summarise(p, floors[p], ours[p]) for p in args.parts}
    print()
    print(format_report(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nresults: {args.out}")
    verdicts = [s.get(k) for s in result["summary"].values() for k in ("verdict", "align_verdict")]
    return 1 if "FAIL" in verdicts else 0


if __name__ == "__main__":
    sys.exit(main())
