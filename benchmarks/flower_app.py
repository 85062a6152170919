"""Flower's FedAvg on issue 12's workload; runs INSIDE Flower's own virtual environment.

Started by `flower_fedavg.py`, never by the project's tests. The data, initial model,
optimizer, batches and evaluation come from `workload.py` (the project's code), so the
arithmetic is that of `fslsage-ray run ... algorithm.name=fedavg`:
- each of the clients trains the whole ResNet-18 for one local epoch (batch 256, Adam as
  configured); like our FedAvg client it keeps its Adam moments and its RNG across rounds,
  here in Flower's per-node `context.state`, as Flower's docs advise for stateful clients;
- Flower's FedAvg strategy averages the models weighted by the clients' sample counts;
- the server evaluates the global model on the test images after every round (centralised
  evaluation); no federated evaluation (fraction_evaluate=0).

Prints `BENCH <event> <time.time()> ...` lines that the harness reads: `round 0` when the
strategy starts its first round, `round k` when round k's evaluation is done.

    FLWR_TELEMETRY_ENABLED=0 python benchmarks/flower_app.py --data-dir ../shared/data
"""
# ruff: noqa: E402  (the environment and sys.path are set before flwr and workload load)

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ["FLWR_TELEMETRY_ENABLED"] = "0"  # before flwr is imported: send nothing anywhere
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # workload.py and fslsage_ray

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation
from workload import Sizes, Workload, evaluate, full_model, overrides, train_epoch, workload_config

# Per process (the driver, and each of Flower's Ray actors): read once, reused every round.
_CACHE: dict[str, object] = {}


def mark(event: str, *values: object) -> None:
    print("BENCH", event, repr(time.time()), *values, flush=True)


def _workload() -> Workload:
    if "workload" not in _CACHE:
        over = [a for a in os.environ["BENCH_OVERRIDES"].split("\n") if a]
        _CACHE["workload"] = Workload(workload_config(over))
    return _CACHE["workload"]  # type: ignore[return-value]


def _model() -> torch.nn.Module:
    if "model" not in _CACHE:
        _CACHE["model"] = full_model(_workload().template())
    return _CACHE["model"]  # type: ignore[return-value]


def _view(cid: int):
    key = f"view{cid}"
    if key not in _CACHE:
        _CACHE[key] = _workload().client_view(cid)
    return _CACHE[key]


def optimizer_record(optimizer: torch.optim.Optimizer) -> ArrayRecord:
    """Adam's moments and step counts, flattened into named tensors."""
    state = optimizer.state_dict()["state"]
    return ArrayRecord({f"{i}.{k}": v for i, s in state.items() for k, v in s.items()})


def load_optimizer(optimizer: torch.optim.Optimizer, record: ArrayRecord) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in record.to_torch_state_dict().items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    cid = int(context.node_config["partition-id"])
    w = _workload()
    view = _view(cid)
    model = _model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    batch_size = w.config.algorithm.batch_size
    optimizer = w.optimizer(model.parameters(), view.num_batches(batch_size))
    if "optimizer" in context.state:
        load_optimizer(optimizer, context.state["optimizer"])
    gen = w.client_generator(cid)
    if "rng" in context.state:
        gen.set_state(context.state["rng"].to_torch_state_dict()["state"])
    loss = train_epoch(model, optimizer, view, gen, batch_size)
    context.state["optimizer"] = optimizer_record(optimizer)
    context.state["rng"] = ArrayRecord({"state": gen.get_state()})
    metrics = MetricRecord({"train_loss": loss, "num-examples": view.num_samples})
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=msg)


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    w = _workload()
    model = _model()
    test = w.test_arrays()
    eval_batch = w.config.run.eval_batch_size
    n = w.num_clients
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=n,
        min_available_nodes=n,
    )

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round == 0:  # called once before round 1: we do not evaluate there either
            mark("round", 0)
            return None
        model.load_state_dict(arrays.to_torch_state_dict())
        metrics = evaluate(w.task, model[0], model[1], test, eval_batch)
        mark("round", server_round, metrics["test_acc"], metrics["test_loss"])
        return MetricRecord(metrics)

    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(model.state_dict()),
        num_rounds=int(os.environ["BENCH_ROUNDS"]),
        train_config=ConfigRecord({}),
        evaluate_fn=evaluate_fn,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=Sizes.clients)
    parser.add_argument("--samples-per-client", type=int, default=Sizes.samples_per_client)
    parser.add_argument("--test-size", type=int, default=Sizes.test_size)
    parser.add_argument("--rounds", type=int, default=Sizes.rounds)
    parser.add_argument("--client-cpus", type=float, default=1.0, help="per client actor")
    return parser.parse_args(argv)


def main_cli(argv: list[str] | None = None) -> int:
    mark("start")
    args = parse_args(argv)
    sizes = Sizes(args.clients, args.samples_per_client, args.test_size, args.rounds)
    # The apps read these in every process (Ray actors inherit the environment).
    over = overrides(sizes, args.data_dir.resolve(), "fedavg", augment=False)
    os.environ["BENCH_OVERRIDES"] = "\n".join(over)
    os.environ["BENCH_ROUNDS"] = str(args.rounds)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent)])
    import flower_app  # by module name, so Flower's actors import the apps, not copies

    run_simulation(
        server_app=flower_app.server_app,
        client_app=flower_app.client_app,
        num_supernodes=args.clients,
        backend_config={
            "client_resources": {"num_cpus": args.client_cpus, "num_gpus": 0.0},
            "init_args": {"include_dashboard": False},
        },
    )
    mark("done")
    return 0


if __name__ == "__main__":
    sys.exit(main_cli())
