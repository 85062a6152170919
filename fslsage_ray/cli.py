"""`fslsage-ray run | plan | compare | scale | plot | simtime | generate | info`: the command
line over the Python API.

Every subcommand takes `--config FILE` (default: the built-in offline quick start) and any
number of `section.key=value` overrides, validated before anything starts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fslsage_ray.config import Config, ConfigError, dump_config, load_config, quickstart_path
from fslsage_ray.data.dataset import DataError
from fslsage_ray.errors import RunInterrupted, RunStopped
from fslsage_ray.models.errors import ModelError
from fslsage_ray.outputs.headline import (
    HeadlineMetric,
    headline_from_metadata,
    is_number,
    noun,
)
from fslsage_ray.outputs.run_dir import CONFIG_FILE, METRICS_FILE
from fslsage_ray.outputs.storage import Where, input_folders, is_uri, join, output_folder

if TYPE_CHECKING:  # pyarrow, torch and Ray load only for the commands that use them
    import pyarrow as pa


def _extra_overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.overrides)
    if getattr(args, "backend", None):
        overrides.append(f"runtime.backend={args.backend}")
    if getattr(args, "address", None):
        overrides.append(f"runtime.address={args.address}")
    return overrides


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config or quickstart_path(), _extra_overrides(args))


def _cmd_run(args: argparse.Namespace) -> int:
    from fslsage_ray.simulation import Simulation

    if args.resume:
        if args.config or args.out:
            raise ConfigError("--resume continues a run folder's own config; drop --config/--out")
        sim = Simulation.resume(
            args.resume,
            _extra_overrides(args),
            progress=not args.quiet,
            allow_data_change=args.allow_data_change,
        )
    else:
        config = _config(args)
        sim = Simulation(config, args.out, overwrite=args.overwrite, progress=not args.quiet)
    print(f"run folder: {sim.location}", file=sys.stderr)
    table = sim.run()
    last = table.slice(table.num_rows - 1).to_pylist()[0]
    print(
        f"done: {table.num_rows} rounds, {_headline_result(table)}, "
        f"{last['comm_gib_cum']:.4f} GiB communicated; "
        f"metrics in {join(sim.location, METRICS_FILE)}"
    )
    return 0


def _headline_result(table: pa.Table) -> str:
    """The final and best headline, e.g. final test accuracy 0.9806 (best 0.9810), or test
    loss for a language model: the metrics table names its task's headline.
    """
    metric = headline_from_metadata(table.schema.metadata, table.column_names)
    values = table.column(metric.column).to_pylist() if metric.column in table.column_names else []

    def fmt(value: object) -> str:
        return f"{value:.4f}" if is_number(value) else "n/a"

    final = values[-1] if values else None
    return f"final {metric.noun} {fmt(final)} (best {fmt(metric.best(values))})"


def _cmd_plan(args: argparse.Namespace) -> int:
    from fslsage_ray.experiment import planned_sizes
    from fslsage_ray.plan import plan_rounds

    if args.profile:
        args.overrides = [*args.overrides, f"system.profile={args.profile}"]
    config = _config(args)
    client_sizes, sizes = planned_sizes(config)
    rounds = args.rounds or config.run.rounds
    authors = None
    if args.ledger == "authors":
        from fslsage_ray.experiment import planned_authors_view

        authors = planned_authors_view(config, sizes)
    plan = plan_rounds(config, client_sizes, sizes, rounds, authors)
    memory = None
    if args.memory:  # torch and the model are needed for this part only
        from fslsage_ray.memory import plan_memory

        memory = plan_memory(config)
        plan["memory"] = memory.to_dict()
    if args.profile:  # communication only: the seconds messages take on the profile's links
        from fslsage_ray.system.replay import replay_rounds

        for row, sim in zip(
            plan["rounds"], replay_rounds(config, rounds, comm_only=True), strict=True
        ):
            row["comm_s"] = sim["sim_round_s"]
    if args.json:
        print(json.dumps(plan, indent=2))
        return 0
    print(f"{plan['algorithm']}: {plan['num_clients']} clients, model bytes {plan['model_bytes']}")
    for row in plan["rounds"]:
        kinds = ", ".join(f"{k} {v / 2**20:.2f} MiB" for k, v in row["bytes"].items())
        took = f", {row['comm_s']:.3f} s on {args.profile}" if "comm_s" in row else ""
        print(
            f"round {row['round']:>4}: {row['gib']:.4f} GiB (cum {row['gib_cum']:.3f}){took} | "
            f"{kinds}"
        )
    if authors is not None:
        _print_authors_plan(plan)
    last = plan["rounds"][-1]
    if abs(last["gib_cum_if_all"] - last["gib_cum"]) > 1e-12:
        print(
            f"total: {last['gib_cum']:.4f} GiB sending {plan['model_bytes']['transfer']} model "
            f"state; {last['gib_cum_if_all']:.4f} GiB if every model transfer sent all of it "
            "(model.transfer=all, the authors' count)"
        )
    if memory is not None:
        print("\n".join(memory.lines()))
    return 0


def _print_authors_plan(plan: dict) -> None:
    """The same rounds as the authors' code books them (plan --ledger authors)."""
    print("as the authors' code books them (calculate_load and the KV presents):")
    for row in plan["rounds"]:
        kinds = ", ".join(f"{k} {v / 2**20:.2f} MiB" for k, v in row["authors_bytes"].items())
        print(
            f"round {row['round']:>4}: {row['authors_total'] / 2**30:.4f} GiB "
            f"(cum {row['authors_gib_cum']:.3f}) | {kinds}"
        )


def _cmd_info(args: argparse.Namespace) -> int:
    config = _config(args)
    print(dump_config(config))
    if config.runtime.backend == "inprocess":
        print("backend: in-process (no Ray)")
        return 0
    from fslsage_ray.memory.auto import ClusterMemory
    from fslsage_ray.runtime.cluster_info import cluster_lines

    memory = ClusterMemory(config)
    for line in cluster_lines(config, memory.lines, memory.fit):
        print(line)
    return 0


def _budgets(text: str | None) -> tuple[float, ...]:
    if not text:
        return (50.0, 80.0)
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise ConfigError(f"--budgets {text!r} must be comma-separated GiB values") from exc


# Which headline each target option is for, so a loss target is never read as an accuracy.
TARGET_FLAGS = {"test_acc": "--target", "test_loss": "--target-loss"}


def _target(args: argparse.Namespace) -> tuple[str, float] | None:
    """(headline column, value) from --target (an accuracy fraction) or --target-loss."""
    if args.target is not None:
        return "test_acc", args.target
    if args.target_loss is not None:
        return "test_loss", args.target_loss
    return None


def _target_value(metric: HeadlineMetric, target: tuple[str, float] | None) -> float | None:
    """The target's value, refused when it is for another headline than the runs'."""
    if target is None:
        return None
    column, value = target
    if column != metric.column:
        fits = TARGET_FLAGS.get(metric.column)
        hint = f"use {fits}" if fits else "no target option applies"
        raise ConfigError(
            f"{TARGET_FLAGS[column]} is a target in {noun(column)}, but these runs are "
            f"judged by {metric.noun}; {hint}"
        )
    return value


def _report(
    run_dirs: Sequence[Where],
    out_dir: Where,
    target: tuple[str, float] | None,
    budgets: tuple[float, ...],
) -> list[Path]:
    """Figures and the summary table for finished runs, in their shared headline metric,
    with the leakage probes' figures and table where the runs have probe columns; run
    folders and the output folder may be URIs. Returns the files written, where the output
    folder is local (a tracker logs them)."""
    from fslsage_ray.outputs.plots import default_target, plot_all
    from fslsage_ray.outputs.probe_report import PROBE_TABLE_TITLE, plot_probes, probe_table
    from fslsage_ray.outputs.runs import common_headline, load_runs
    from fslsage_ray.outputs.summary import summarize, to_markdown

    try:
        with input_folders(run_dirs, (CONFIG_FILE, METRICS_FILE)) as local_runs:
            records = load_runs(local_runs)
            metric = common_headline(records)
            value = _target_value(metric, target)
            datasets = {r.dataset for r in records}
            if value is None and len(datasets) == 1:
                value = default_target(next(iter(datasets)), metric.column)
            with output_folder(out_dir) as local_out:
                figures = plot_all(records, local_out, target=value, budgets=budgets)
                figures += plot_probes(records, local_out)
                table = to_markdown(summarize(records, value), value)
                probes = probe_table(records)
                if probes is not None:
                    table += f"\n\n{PROBE_TABLE_TITLE}\n\n{probes}"
                (local_out / "summary.md").write_text(table + "\n")
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
    print(table)
    for path in figures:
        print(f"figure: {join(out_dir, path.name)}")
    return [] if is_uri(out_dir) else [*figures, Path(out_dir) / "summary.md"]


def _cmd_compare(args: argparse.Namespace) -> int:
    from fslsage_ray.compare import (
        parse_methods,
        parse_seeds,
        parse_sweep,
        run_comparison,
        track_comparison,
    )

    config = _config(args)
    methods = parse_methods(args.methods)
    sweep = parse_sweep(args.sweep)
    seeds = parse_seeds(args.seeds)
    out_dir = args.out or join(config.run.out_dir, f"compare-{config.run.name}")
    out_dir = out_dir if is_uri(out_dir) else Path(out_dir)
    run_dirs = run_comparison(
        config, methods, out_dir, sweep, args.overwrite, not args.quiet, seeds, args.parallel
    )
    files = _report(run_dirs, out_dir, _target(args), _budgets(args.budgets))
    if not is_uri(out_dir):  # a tracker logs local files (each run was tracked as it ran)
        track_comparison(config, out_dir, run_dirs, files)
    print(f"combined table: {join(out_dir, 'comparison.parquet')}")
    return 0


def _cmd_scale(args: argparse.Namespace) -> int:
    from fslsage_ray.compare import parse_methods, parse_seeds
    from fslsage_ray.study.design import design_study, parse_counts
    from fslsage_ray.study.run import TABLE_FILE, run_study

    config = _config(args)
    methods = parse_methods(args.methods or config.algorithm.name)
    seeds = parse_seeds(args.seeds)
    counts = parse_counts(args.clients)
    out_dir = args.out or join(config.run.out_dir, f"scale-{config.run.name}")
    if is_uri(out_dir):
        raise ConfigError("scale writes to a local folder; copy it to storage afterwards")
    runs = design_study(config, methods, counts, seeds, args.data, args.samples_per_client)
    table = run_study(
        runs, Path(out_dir), args.overwrite, not args.quiet, args.sample_every, args.parallel
    )
    _study_report(table.to_pylist(), Path(out_dir))
    print(f"study table: {Path(out_dir) / TABLE_FILE}")
    return 0


def _study_report(rows: list[dict], out_dir: Path) -> None:
    from fslsage_ray.study.report import write_report

    text, figures = write_report(rows, out_dir)
    print(text)
    for path in figures:
        print(f"figure: {path}")


def _cmd_plot(args: argparse.Namespace) -> int:
    from fslsage_ray.study.run import TABLE_FILE

    if (
        len(args.runs) == 1
        and not is_uri(args.runs[0])
        and (Path(args.runs[0]) / TABLE_FILE).is_file()
    ):
        import pyarrow.parquet as pq  # a scaling study: its own figures, from its table

        out = Path(args.out or args.runs[0])
        out.mkdir(parents=True, exist_ok=True)
        _study_report(pq.read_table(Path(args.runs[0]) / TABLE_FILE).to_pylist(), out)
        return 0
    run_dirs = [p if is_uri(p) else Path(p) for p in args.runs]
    out_dir = args.out or (run_dirs[0] if len(run_dirs) == 1 else ".")
    out_dir = out_dir if is_uri(out_dir) else Path(out_dir)
    _report(run_dirs, out_dir, _target(args), _budgets(args.budgets))
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from fslsage_ray.lm.beam_search import BeamSettings
    from fslsage_ray.lm.e2e_metrics import MetricsUnavailable
    from fslsage_ray.lm.generate import PREDICTIONS_FILE, generate_run
    from fslsage_ray.outputs.generation_scores import GENERATION_FILE

    try:
        settings = BeamSettings(
            args.beam, args.length_penalty, args.no_repeat_ngram, args.max_new_tokens
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        result = generate_run(
            args.run_dir,
            args.checkpoint,
            settings,
            args.limit,
            args.batch_size,
            args.device,
            args.merge_lora,
        )
    except MetricsUnavailable as exc:
        print(f"error: {exc}; the texts are in {PREDICTIONS_FILE}", file=sys.stderr)
        return 2
    scores = ", ".join(
        f"{name} {result[key]:.2f}"
        for key, name in (("bleu", "BLEU"), ("nist", "NIST"), ("rouge_l", "ROUGE-L"))
        if result.get(key) is not None
    )
    print(
        f"{result['mrs']} MRs decoded ({result['checkpoint']} checkpoint, round "
        f"{result['round']}): {scores}"
    )
    print(f"wrote {Path(args.run_dir) / PREDICTIONS_FILE} and {GENERATION_FILE}")
    return 0


def _cmd_simtime(args: argparse.Namespace) -> int:
    from fslsage_ray.outputs.runs import load_runs
    from fslsage_ray.outputs.simtime import replay_run

    runs = [r for r in args.runs if "=" not in r]
    overrides = [*(r for r in args.runs if "=" in r), f"system.profile={args.profile}"]
    out_dir = Path(args.out)
    cache: dict = {}
    done = [replay_run(r.path, out_dir, overrides, cache) for r in load_runs(runs)]
    for path in done:
        print(f"{path}: replayed on {args.profile}")
    _report(done, out_dir, _target(args), _budgets(None))
    return 0


def _target_options(p: argparse.ArgumentParser) -> None:
    """--target or --target-loss, whichever fits the runs' headline (not both)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--target",
        type=float,
        help="accuracy target (a fraction) for 'GiB to target' (default: 0.81 CIFAR-10)",
    )
    group.add_argument(
        "--target-loss",
        type=float,
        help="test loss target for 'GiB to target' in runs judged by loss (language models)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fslsage-ray", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="YAML experiment (default: built-in digits quick start)")
        p.add_argument("overrides", nargs="*", help="section.key=value, e.g. run.rounds=5")

    run = sub.add_parser("run", help="run a simulation")
    common(run)
    run.add_argument(
        "--out", help="run folder or URI, e.g. s3://bucket/run (default: run.out_dir/<name>-<time>)"
    )
    run.add_argument("--overwrite", action="store_true", help="replace a non-empty run folder")
    run.add_argument("--backend", choices=["ray", "inprocess"], help="shortcut for runtime.backend")
    run.add_argument("--address", help="attach to this Ray cluster (else RAY_ADDRESS or local)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a run (folder or URI) from its checkpoint"
    )
    run.add_argument(
        "--allow-data-change",
        action="store_true",
        help="with --resume: continue even if the data files' hashes changed",
    )

    plan = sub.add_parser("plan", help="bytes per round by message kind, without training")
    common(plan)
    plan.add_argument("--rounds", type=int, help="how many rounds (default: run.rounds)")
    plan.add_argument("--json", action="store_true", help="print JSON")
    plan.add_argument(
        "--profile", help="also each round's communication seconds on a system profile"
    )
    plan.add_argument(
        "--memory", action="store_true", help="also the memory each actor kind will hold"
    )
    plan.add_argument(
        "--ledger",
        choices=("ours", "authors"),
        default="ours",
        help="authors: also the bytes as the authors' GPT-2 code books them (gpt2 only)",
    )

    simtime = sub.add_parser(
        "simtime", help="finished runs replayed under a system profile (simulated time)"
    )
    simtime.add_argument(
        "runs", nargs="+", help="run folders (or folders of them), then system.key=value, ..."
    )
    simtime.add_argument("--profile", required=True, help="datacenter | broadband | mobile")
    simtime.add_argument("--out", required=True, help="folder for the replayed runs and figures")
    _target_options(simtime)

    compare = sub.add_parser("compare", help="several algorithms on the same split and seed")
    common(compare)
    compare.add_argument("--methods", help="comma-separated (default: the six of the paper)")
    compare.add_argument("--sweep", help="also sweep one setting, e.g. data.alpha=1,10,100")
    compare.add_argument(
        "--seeds", help="run every setting once per seed, e.g. 200,201,202 (mean and spread)"
    )
    compare.add_argument("--out", help="folder or URI for the runs, table and figures")
    compare.add_argument(
        "--parallel",
        action="store_true",
        help="run the runs at the same time as Ray tasks (in-process backend), same results",
    )
    compare.add_argument("--overwrite", action="store_true", help="replace existing run folders")
    _target_options(compare)
    compare.add_argument("--quiet", action="store_true", help="no progress bars")
    compare.add_argument("--budgets", help="GiB budgets for the alpha figure (default 50,80)")

    scale = sub.add_parser(
        "scale", help="a scaling study: the same experiment at several client counts"
    )
    common(scale)
    scale.add_argument("--clients", required=True, help="client counts, e.g. 10,100,1000")
    scale.add_argument("--methods", help="comma-separated (default: the config's algorithm)")
    scale.add_argument("--seeds", help="run every count once per seed, e.g. 200,201,202")
    scale.add_argument(
        "--data",
        choices=["split", "per_client"],
        default="split",
        help="split: the same training set over more clients; per_client: N samples each",
    )
    scale.add_argument("--samples-per-client", type=int, help="N for --data per_client")
    scale.add_argument("--out", help="study folder (default: run.out_dir/scale-<name>)")
    scale.add_argument("--overwrite", action="store_true", help="start the study afresh")
    scale.add_argument("--backend", choices=["ray", "inprocess"], help="runtime.backend")
    scale.add_argument("--address", help="attach to this Ray cluster (else RAY_ADDRESS or local)")
    scale.add_argument(
        "--sample-every", type=float, default=2.0, help="seconds between memory samples"
    )
    scale.add_argument("--quiet", action="store_true", help="no progress bars")
    scale.add_argument(
        "--parallel",
        action="store_true",
        help="runs at the same time as Ray tasks (in-process backend): same learning; time "
        "and memory then measured with runs sharing the machine",
    )

    plot = sub.add_parser(
        "plot", help="figures and a summary from finished run folders or a scaling study"
    )
    plot.add_argument("runs", nargs="+", help="run folders or URIs, or folders of run folders")
    plot.add_argument("--out", help="folder or URI for the PNGs and summary.md")
    _target_options(plot)
    plot.add_argument("--budgets", help="GiB budgets for the alpha figure (default 50,80)")

    generate = sub.add_parser(
        "generate", help="decode a GPT-2 run's test MRs (beam search) and score BLEU/ROUGE-L"
    )
    generate.add_argument("run_dir", help="a finished run folder with a checkpoint")
    generate.add_argument(
        "--checkpoint",
        choices=["last", "best", "initial"],
        default="last",
        help="last: the run's checkpoint; best: the round with the best test loss "
        "(checkpoint_best.pt, run.keep_best); initial: the untrained model (a baseline)",
    )
    generate.add_argument("--beam", type=int, default=10, help="beam size (LoRA paper: 10)")
    generate.add_argument("--length-penalty", type=float, default=0.9, help="(LoRA paper: 0.9)")
    generate.add_argument(
        "--no-repeat-ngram", type=int, default=4, help="ban repeated n-grams (0: none)"
    )
    generate.add_argument("--max-new-tokens", type=int, default=64, help="per MR (LoRA: 64)")
    generate.add_argument("--limit", type=int, help="decode only the first N test MRs")
    generate.add_argument("--batch-size", type=int, default=8, help="MRs decoded together")
    generate.add_argument("--device", default="cpu", help="cpu or cuda")
    generate.add_argument(
        "--merge-lora", action="store_true", help="fold the LoRA adapters into the weights first"
    )

    info = sub.add_parser("info", help="Ray resources seen and the actor layout for a config")
    common(info)
    info.add_argument("--address", help="attach to this Ray cluster")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `fslsage-ray` alone runs the offline quick start
        args = parser.parse_args(["run", *(argv or [])])
    handlers = {
        "run": _cmd_run,
        "plan": _cmd_plan,
        "simtime": _cmd_simtime,
        "info": _cmd_info,
        "compare": _cmd_compare,
        "plot": _cmd_plot,
        "scale": _cmd_scale,
        "generate": _cmd_generate,
    }
    try:
        return handlers[args.command](args)
    except RunInterrupted as exc:  # its one line is already printed
        return exc.exit_code
    except (ConfigError, DataError, ModelError, RunStopped) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `fslsage-ray plan --json | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted; completed rounds are in the run folder's metrics", file=sys.stderr)
        return 130
