"""The memory plan of a config, from sizes, before any training (like the byte plan).

Model state comes from the run's own template: parameters (trainable, and frozen ones such
as LoRA's base weights, held once per process, in its template, and shared by every client
and server copy there: models/frozen.py), buffers, Adam's two
moments per trainable parameter (optim.py: Adam or AdamW, nothing else), gradients (one
client steps at a time and frees them after its step), and the per-client state that
stores keep between rounds (runtime.client_state_budget_gb and server_state_budget_gb bound
how many stay in memory). What depends on the batch (activations, alignment, evaluation)
is measured on a few samples and scaled (probe.py, measure_steps.py). Which clients each
actor hosts comes from the placement planner (runtime/placement.py). No Ray is needed.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from fslsage_ray.algorithms.participation import participant_count
from fslsage_ray.algorithms.registry import get_algorithm
from fslsage_ray.algorithms.state_store import GIB, _nbytes
from fslsage_ray.config.schema import AUTO, Config, RuntimeConfig
from fslsage_ray.experiment import (
    WorldSpec,
    build_template,
    initial_aux,
    load_data,
    partition,
)
from fslsage_ray.memory.measure_steps import eval_chunk_bytes, probe_steps, run_threads
from fslsage_ray.memory.parts import BASELINE_RSS, ActorMemory, MemoryPlan, Part
from fslsage_ray.runtime.allocator import torch_threads
from fslsage_ray.runtime.backend import CHUNK_BYTES
from fslsage_ray.tasks.base import Arrays, Task


def param_bytes(module: nn.Module, trainable: bool) -> int:
    return sum(
        p.numel() * p.element_size() for p in module.parameters() if p.requires_grad == trainable
    )


def buffer_bytes(module: nn.Module) -> int:
    return sum(b.numel() * b.element_size() for b in module.buffers())


def state_bytes(module: nn.Module) -> int:
    """Parameters (trainable and frozen) and buffers: one copy of the module."""
    return param_bytes(module, True) + param_bytes(module, False) + buffer_bytes(module)


def own_bytes(module: nn.Module) -> int:
    """What one more copy of the module costs in a process: its trainable parameters and
    buffers. Frozen ones are the template's, shared by every copy (models/frozen.py), and
    a snapshot leaves them out too."""
    return param_bytes(module, True) + buffer_bytes(module)


def adam_state_bytes(module: nn.Module) -> int:
    """Adam/AdamW: exp_avg and exp_avg_sq like each trainable parameter, and a float32 step."""
    params = [p for p in module.parameters() if p.requires_grad]
    return sum(2 * p.numel() * p.element_size() + 4 for p in params)


def step_workspace_bytes(module: nn.Module, config: Config) -> int:
    """The foreach Adam step's temporaries: sqrt(exp_avg_sq) for every parameter, and for
    Adam with L2 weight decay a copy of the gradients (AdamW decays the weights in place)."""
    copies = 2 if config.optim.name == "adam" and config.optim.weight_decay > 0 else 1
    return copies * param_bytes(module, True)


def _data(config: Config) -> tuple[Task, Arrays, list[int], int, int, Arrays]:
    """(task, training arrays to probe with, client sizes, bytes per training row, test
    rows, test arrays to probe with); CIFAR is not decoded (zero images of its shape)."""
    import numpy as np

    from fslsage_ray import registry
    from fslsage_ray.data import client_sizes
    from fslsage_ray.tasks.classification import ImageClassification, ImageSpec

    found = registry.entry(registry.DATA, config.data.name)
    shape = found.shape if found is not None else None
    if shape is not None and config.data.partition != "shards":  # known without decoding
        n_train = min(shape.train_size, config.data.train_subset or shape.train_size)
        n_test = min(10_000, config.data.test_subset or 10_000)
        c, side = shape.channels, shape.image_size
        spec = ImageSpec(255.0, (0.0,) * c, (1.0,) * c, False)
        task = ImageClassification(spec, shape.num_classes, c, side)
        rows = max(2 * 512, 8)
        arrays = {
            "images": np.zeros((rows, side, side, c), np.uint8),
            "labels": np.zeros(rows, np.int64),
        }
        sizes = [int(s) for s in client_sizes(n_train, config.algorithm.num_clients)]
        return task, arrays, sizes, side * side * c + 8, n_test, arrays
    data = load_data(config)
    parts = partition(config, data.train_keys)
    n = len(data.train_keys)
    per_row = sum(a.nbytes for a in data.train.values()) // max(n, 1)
    n_test = data.task.num_samples(data.test)
    return data.task, data.train, [len(p) for p in parts], per_row, n_test, data.test


def local_node(runtime: RuntimeConfig) -> dict[str, float]:
    """The one node a private local Ray on this machine advertises (Ray counts the GPUs it
    sees; torch's count stands in for that when runtime.local_num_gpus does not say)."""
    node: dict[str, float] = {"CPU": float(runtime.local_num_cpus or os.cpu_count() or 1)}
    gpus = runtime.local_num_gpus
    if gpus is None:
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus:
        node["GPU"] = float(gpus)
    node["memory"] = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return node


def local_groups(config: Config) -> tuple[tuple[int, ...], ...]:
    """Clients per client actor as a private local Ray on this machine would place them."""
    from fslsage_ray.runtime.placement import layout_actors

    uses_server = get_algorithm(config).uses_server
    node = local_node(config.runtime)
    return layout_actors(
        config.runtime, config.algorithm.num_clients, [node], uses_server=uses_server
    ).groups


def _resident(
    hosted: int, active: int, entry: int, budget_gb: float | None, at_once: int | None = None
) -> int:
    """Entries a store keeps in memory: all it ever built, or above a budget, this round's
    participants and as many more as the budget holds. Participants streamed
    (runtime.stream_participants, `at_once` given): only those in use at once must stay."""
    if budget_gb is None or entry <= 0:
        return hosted
    if at_once is not None:
        active = min(active, at_once)
    return min(hosted, max(active, int(budget_gb * GIB // entry)))


class MemoryPlanner:
    """The plan's parts that take work (data shapes, the template, the probed steps and
    evaluation chunk), computed once; `plan` then sizes any layout, in-flight window or
    batch from them in microseconds, so a fit can try many (memory/fit.py). A config with
    'auto' GPU shares is planned as if granted a GPU; plan_memory (auto.py) fits them first."""

    def __init__(self, config: Config) -> None:
        self.config = config = _planning_config(config)
        self.task, self.train, self.client_sizes, self.row_bytes, self.n_test, self.test = _data(
            config
        )
        task = self.task
        self.world = WorldSpec(config, task)
        self.template = template = build_template(self.world)
        self.algorithm = algorithm = get_algorithm(config)
        self.probed = probed = probe_steps(algorithm, config, template, self.train)
        self.eval_rows = eval_rows = min(config.run.eval_batch_size, self.n_test)
        head = (
            probed.server.eval_head() if probed.server is not None else _head(algorithm, template)
        )
        self.eval_client = algorithm.client_module(template)
        with run_threads(config):
            self.chunk = eval_chunk_bytes(task, self.eval_client, head, self.test, eval_rows)
        self.eval_models = state_bytes(self.eval_client) + (
            state_bytes(head) if probed.server else 0
        )
        self.shared = sum(
            _nbytes(v)
            for v in algorithm.initial_parts(
                template, initial_aux(template, config.run.seed)
            ).values()
        )
        server = probed.server
        # the server's shared state, and one client's entry (SplitFed-MS copy, FSL-SAGE AM)
        self.server_shared, self.server_entry = (
            _server_snapshot_bytes(server) if server is not None else (0, 0)
        )
        self.buffer_rows = _buffer_rows(config, algorithm, self.client_sizes)

    def with_runtime(self, runtime: RuntimeConfig) -> MemoryPlanner:
        """The same probed pieces, planned for another runtime section (a fitted one)."""
        other = copy.copy(self)
        other.config = replace(self.config, runtime=_planning_runtime(runtime))
        return other

    @property
    def num_clients(self) -> int:
        return len(self.client_sizes)

    def plan(
        self,
        groups: Sequence[Sequence[int]] | None = None,
        window: int | None = None,
        batch: int | None = None,
    ) -> MemoryPlan:
        """`groups` as plan_memory; `window`: runtime.max_inflight_uploads unless given;
        `batch`: algorithm.batch_size unless given (a fit's suggestion of a smaller one)."""
        config, algorithm, probed = self.config, self.algorithm, self.probed
        task, client_sizes, row_bytes, n_test, test = (
            self.task,
            self.client_sizes,
            self.row_bytes,
            self.n_test,
            self.test,
        )
        template = self.template
        client = probed.client
        B = batch or config.algorithm.batch_size
        runtime = config.runtime
        m = len(client_sizes)
        in_process = runtime.backend == "inprocess"
        if in_process:
            groups = [tuple(range(m))]
        elif groups is None:
            groups = local_groups(config)
        k = participant_count(m, config.algorithm.clients_per_round)
        window = 1 if in_process else (window or runtime.max_inflight_uploads)
        batch = min(B, max(client_sizes))
        payload = _payload_bytes(probed.payload, batch)
        client_part = client.model
        aux = getattr(client, "aux", None)
        aux_optimizer = getattr(client, "aux_optimizer", None)
        entry = own_bytes(client_part) + adam_state_bytes(client_part)
        if aux is not None:
            entry += state_bytes(aux) + (adam_state_bytes(aux) if aux_optimizer else 0)
        hosted = max(len(g) for g in groups)
        active = min(hosted, math.ceil(k * hosted / m))
        # streamed, a host holds the clients in flight and the one it loads next
        at_once = window + 1 if runtime.stream_participants else None
        resident = _resident(hosted, active, entry, runtime.client_state_budget_gb, at_once)
        trainable = param_bytes(client_part, True) + (
            param_bytes(aux, True) if aux_optimizer else 0
        )
        exchanging = algorithm.returns_gradients
        graphs = min(window, active) if exchanging else 1
        step_act = probed.lines["client_step"].at(batch)
        template_bytes = state_bytes(template.client) + state_bytes(template.server)

        c: list[Part] = [
            Part("template (client + server part, once per process)", template_bytes),
            Part(
                f"client models: {resident} x trainable + buffers",
                resident * own_bytes(client_part),
            ),
        ]
        if param_bytes(client_part, False):  # counted once, in the template
            c.append(Part(f"frozen weights: the template's, shared by the {resident} clients", 0))
        c.append(
            Part(
                f"optimizer state (Adam): {resident} x 2 moments",
                resident * adam_state_bytes(client_part),
            )
        )
        if aux is not None:
            c.append(Part(f"AMs: {resident} x AM", resident * state_bytes(aux)))
            if aux_optimizer:
                c.append(
                    Part(f"AM optimizers: {resident} x 2 moments", resident * adam_state_bytes(aux))
                )
        c += [
            Part(
                "data: hosted clients' training rows",
                sum(sorted(client_sizes, reverse=True)[:hosted]) * row_bytes,
                on_device=False,
                note="object store, mapped" if not in_process else "",
            ),
            Part(
                f"one step at batch {batch}: activations, gradients, Adam temporaries",
                step_act,
                "step",
            ),
        ]
        if graphs > 1:
            graph_only = max(0, step_act - trainable - step_workspace_bytes(client_part, config))
            c.append(
                Part(
                    f"in-flight window: {graphs - 1} more graphs awaiting dL/dz",
                    (graphs - 1) * graph_only,
                    "step",
                )
            )
        if payload and not in_process:
            held = window if exchanging else max(1, window // 2)
            c.append(
                Part(
                    f"in-flight uploads: {held} payload(s) of {batch} samples"
                    + (" + their dL/dz" if exchanging else ""),
                    held * payload * (2 if exchanging else 1),
                    "step",
                    on_device=False,
                )
            )
        eval_rows, eval_client, chunk, eval_models = (
            self.eval_rows,
            self.eval_client,
            self.chunk,
            self.eval_models,
        )
        evaluates_on_workers = (
            not in_process
            and task.batched_evaluation
            and (runtime.eval_on == "workers" or not algorithm.uses_server)
        )
        if evaluates_on_workers:
            c += [
                Part("evaluation models (client + head, copies)", eval_models, "eval"),
                Part(f"evaluation chunk: {eval_rows} test rows", chunk, "eval"),
            ]
        s: list[Part] = []
        server = probed.server
        if server is not None:
            s += _server_parts(
                config,
                algorithm,
                server,
                probed,
                template_bytes,
                own_bytes(eval_client),
                batch,
                payload,
                client_sizes,
                k,
                len(groups),
                window,
                in_process,
                self.buffer_rows,
            )
            own = runtime.server_num_cpus > 0 or runtime.server_num_gpus > 0
            if not evaluates_on_workers or own:
                s.append(Part(f"evaluation chunk: {eval_rows} test rows", chunk, "eval"))
            if aux is not None and algorithm.server_holds_aux and not in_process:
                if runtime.align_on != "server":
                    c += _align_job_parts(config, probed, aux, self.buffer_rows)
        shared = self.shared
        d: list[Part] = [
            Part(
                "data set: training and test arrays",
                row_bytes * sum(client_sizes) + n_test * _test_row_bytes(test),
                on_device=False,
            ),
            Part("global model parts", shared, on_device=False),
            Part(
                f"round results: {k} participants' parts", k * shared, "aggregate", on_device=False
            ),
        ]
        if config.run.checkpoint_every:  # states go to their file a chunk at a time
            states = m * (entry + self.server_entry)
            d.append(
                Part(
                    f"checkpoint: the server's shared state and a chunk of the {m} clients' "
                    "states (at most CHUNK_BYTES and one record)",
                    self.server_shared + min(states, CHUNK_BYTES + max(entry, self.server_entry)),
                    "checkpoint",
                    on_device=False,
                )
            )
        if config.run.checkpoint_every and not in_process:  # the hosts' side of the chunks
            c.append(
                Part(
                    "checkpoint: a chunk of its clients' states",
                    min(hosted * entry, CHUNK_BYTES + entry),
                    "checkpoint",
                    on_device=False,
                )
            )
            if self.server_entry:
                s.append(
                    Part(
                        "checkpoint: a chunk of the per-client entries",
                        min(m * self.server_entry, CHUNK_BYTES + self.server_entry),
                        "checkpoint",
                        on_device=False,
                    )
                )
        if server is None and not in_process:  # FedAvg: the eval models live on the driver
            d.append(
                Part("template and evaluation model", template_bytes + eval_models, on_device=False)
            )
        notes = [
            "steps, alignment and evaluation: the allocation peak of the algorithm's own code on "
            "the batch and half of it (at most 64; profiler), scaled to the batch",
            "GPU column: tensors through torch's allocator; CUDA context (~0.3-0.5 GiB) not "
            "counted",
        ]
        if in_process:
            parts = tuple(c + s + d)
            actors = (ActorMemory("in-process", 1, m, parts, BASELINE_RSS["python + torch"]),)
            store = 0
        else:
            actors = (
                ActorMemory(
                    "client actor", len(groups), hosted, tuple(c), BASELINE_RSS["ray worker"]
                ),
            )
            if server is not None:
                actors += (ActorMemory("server actor", 1, 0, tuple(s), BASELINE_RSS["ray worker"]),)
            actors += (ActorMemory("driver", 1, 0, tuple(d), BASELINE_RSS["ray worker"]),)
            store = row_bytes * sum(client_sizes) + n_test * _test_row_bytes(test)
            store += len(groups) * (window + max(1, window // 2)) * payload
        return MemoryPlan(algorithm.name, runtime.backend, B, actors, int(store), tuple(notes))


# Runtime settings that only say where actors go, how many, what they reserve and where the
# plan puts evaluation and alignment: nothing the probe builds reads them (the algorithm's
# pieces read runtime.server_state_budget_gb and stream_participants, which stay in the key),
# and with_runtime plans any of them from the same probe. `info`, the fit before a run and
# the run itself differ only here.
_PLACEMENT_ONLY = frozenset(
    {
        "backend",
        "address",
        "num_actors",
        "clients_per_actor",
        "actor_num_cpus",
        "actor_num_gpus",
        "actor_memory_gb",
        "actor_resources",
        "server_num_cpus",
        "server_num_gpus",
        "server_memory_gb",
        "server_resources",
        "placement_strategy",
        "placement_timeout_s",
        "local_num_cpus",
        "local_num_gpus",
        "gpu_memory_gb",
        "max_inflight_uploads",
        "dashboard",
        "call_timeout_s",
        "max_restarts",
        "eval_on",
        "align_on",
    }
)
PROBES_KEPT = 2  # planners held per process: each holds a template and probe data
_PROBED: OrderedDict[str, MemoryPlanner] = OrderedDict()


def _probe_key(config: Config) -> str:
    """Everything the probe can depend on: the config less the placement-only runtime
    settings, and what the config's model, data and algorithm names are registered as (a
    plugin may register another class under a name already used in this process)."""
    from fslsage_ray import registry
    from fslsage_ray.config import config_to_dict

    tree = config_to_dict(config)
    tree["runtime"] = {k: v for k, v in tree["runtime"].items() if k not in _PLACEMENT_ONLY}
    tree["runtime"]["probe threads"] = torch_threads(config.runtime)  # from actor_num_cpus
    owners = [
        repr(registry.entry(kind, name))
        for kind, name in (
            (registry.MODEL, config.model.name),
            (registry.DATA, config.data.name),
            (registry.ALGORITHM, config.algorithm.name),
        )
    ]
    return json.dumps([tree, owners], sort_keys=True, default=repr)


def memory_planner(config: Config) -> MemoryPlanner:
    """MemoryPlanner(config), its probe run once per process for configs that differ only in
    placement: `info` plans a config, the fit before a run plans it again for the cluster it
    attaches to, and each probe trains a few steps (seconds). The last PROBES_KEPT are kept."""
    key = _probe_key(config)
    planner = _PROBED.get(key)
    if planner is None:
        planner = _PROBED[key] = MemoryPlanner(config)
        while len(_PROBED) > PROBES_KEPT:
            _PROBED.popitem(last=False)
    _PROBED.move_to_end(key)
    return planner.with_runtime(config.runtime)


def _planning_runtime(runtime: RuntimeConfig) -> RuntimeConfig:
    """A GPU share left to the fit is planned as if granted (a server with a GPU of its own
    evaluates on it); the fit replaces it with the share it finds."""
    return replace(
        runtime,
        actor_num_gpus=1.0 if runtime.actor_num_gpus == AUTO else runtime.actor_num_gpus,
        server_num_gpus=1.0 if runtime.server_num_gpus == AUTO else runtime.server_num_gpus,
    )


def _planning_config(config: Config) -> Config:
    return replace(config, runtime=_planning_runtime(config.runtime))


def _head(algorithm: Any, template: Any) -> nn.Module:
    from fslsage_ray.algorithms.servers import PassThrough

    return PassThrough()


def _test_row_bytes(test: Arrays) -> int:
    rows = max(len(next(iter(test.values()))), 1)
    return sum(a.nbytes for a in test.values()) // rows


def _payload_bytes(payload: Any, batch: int) -> int:
    """One upload of `batch` samples, scaled from the probe's upload."""
    if payload is None:
        return 0
    n = len(payload.targets)
    total = sum(_nbytes(torch.as_tensor(v)) for v in (payload.smashed, payload.targets))
    total += sum(_nbytes(torch.as_tensor(v)) for v in payload.context.values())
    return total * batch // n


def _server_snapshot_bytes(server: Any) -> tuple[int, int]:
    """(the shared part of a server's checkpoint, one client's entry in it)."""
    shared = _nbytes(server.snapshot_shared())
    ids = server.entry_ids()
    return shared, (_nbytes(server.entry_snapshot(ids[0])) if ids else 0)


def _server_parts(
    config,
    algorithm,
    server,
    probed,
    template_bytes,
    eval_client_bytes,
    batch,
    payload,
    client_sizes,
    k,
    actors,
    window,
    in_process,
    buffer_rows,
) -> list[Part]:
    """The server actor: template, its model(s) and optimizer(s), per-client state."""
    runtime = config.runtime
    parts = [
        Part("template (client + server part, once per process)", template_bytes),
        Part("evaluation client model", eval_client_bytes),
    ]
    model = getattr(server, "model", None) or getattr(server, "average", None)
    optimizer = getattr(server, "optimizer", None)
    if model is not None:
        label = "server model" if optimizer is not None else "average server model"
        parts.append(Part(label + " (frozen weights: the template's)", own_bytes(model)))
        if optimizer is not None:
            parts.append(Part("server optimizer state (Adam)", adam_state_bytes(model)))
    states = getattr(server, "states", None)
    if states is not None and states.resident:
        entry = next(iter(states.resident.values()))
        sized = _entry_parts(config, entry, buffer_rows)
        per_client = sum(sized.values())
        # streamed: the uploads every client actor may have in flight, and a job window
        at_once = actors * window + runtime.job_window if runtime.stream_participants else None
        resident = _resident(
            len(client_sizes), k, per_client, runtime.server_state_budget_gb, at_once
        )
        for name, nbytes in sized.items():
            parts.append(Part(f"{name}: {resident} x", resident * nbytes))
    parts.append(
        Part(
            f"one server step at batch {batch}: activations, gradients, Adam temporaries",
            probed.lines["server_step"].at(batch),
            "step",
        )
    )
    if payload and not in_process:
        held = actors * window
        parts.append(
            Part(
                f"in-flight uploads: up to {held} payloads", held * payload, "step", on_device=False
            )
        )
    if algorithm.server_holds_aux:
        parts += _align_server_parts(config, probed, k, in_process, buffer_rows)
    return parts


def _buffer_rows(config: Config, algorithm: Any, client_sizes: Sequence[int]) -> int:
    """Rows an alignment buffer reaches: its size, or what a client uploads in the run."""
    from fslsage_ray.algorithms.client_view import batch_sizes

    per_round = 0
    for n in client_sizes:
        per_batch = batch_sizes(n, config.algorithm.batch_size)
        per_round = max(
            per_round, sum(per_batch[i] for i in algorithm.upload_iterations(len(per_batch)))
        )
    return min(config.alignment.buffer_size, per_round * config.run.rounds)


def _entry_parts(config: Config, entry: Any, buffer_rows: int) -> dict[str, int]:
    """One client's entry on the server, by what it holds."""
    out: dict[str, int] = {}
    if hasattr(entry, "buffer"):  # FSL-SAGE: AM, its optimizer, the alignment buffer
        out["per-client AMs"] = state_bytes(entry.aux)
        out["per-client AM optimizers (Adam)"] = adam_state_bytes(entry.aux)
        buf = entry.buffer
        rows = max(len(buf), 1)
        per_row = (
            _nbytes(
                {k: v for k, v in vars(buf).items() if torch.is_tensor(v) or isinstance(v, Mapping)}
            )
            / rows
        )
        out[f"alignment buffers ({buffer_rows} rows)"] = int(per_row * buffer_rows)
    else:  # SplitFed-MS, FSL-AN: a server-model copy and its optimizer
        out["per-client server copies"] = own_bytes(entry.model)
        out["per-client server optimizers (Adam)"] = adam_state_bytes(entry.model)
    return out


def _align_server_parts(
    config: Config, probed: Any, k: int, in_process: bool, rows: int
) -> list[Part]:
    """Alignment on the server: the jobs of this round's participants (their g* targets and
    copies of each AM and its optimizer), and g*'s computation on one chunk."""
    a = config.alignment
    chunk = min(a.batch_size, rows)
    entry = next(iter(probed.server.states.resident.values()))
    smashed_row = _nbytes(entry.buffer.smashed) / max(len(entry.buffer), 1)
    # A job carries g* and a copy of the AM and its optimizer; its outcome another copy.
    am = state_bytes(entry.aux) + adam_state_bytes(entry.aux)
    job = int(rows * smashed_row) + 2 * am
    parts = [
        Part(
            f"alignment jobs: {k} x (g* targets, AM and optimizer in and out)",
            k * job,
            "align",
            on_device=False,
        ),
        Part(
            f"alignment: computing g* on {chunk} rows",
            probed.lines["align_targets"].at(chunk),
            "align",
        ),
    ]
    if in_process or config.runtime.align_on == "server":
        parts.append(
            Part(
                f"alignment: fitting an AM on {chunk} rows",
                probed.lines["align_fit"].at(chunk),
                "align",
            )
        )
    return parts


def _align_job_parts(config: Config, probed: Any, aux: nn.Module, rows: int) -> list[Part]:
    """A client actor fitting its clients' AMs, one job at a time."""
    a = config.alignment
    chunk = min(a.batch_size, rows)
    entry = next(iter(probed.server.states.resident.values()))
    per_row = _nbytes(
        {
            k: v
            for k, v in vars(entry.buffer).items()
            if torch.is_tensor(v) or isinstance(v, Mapping)
        }
    ) / max(len(entry.buffer), 1)
    smashed_row = _nbytes(entry.buffer.smashed) / max(len(entry.buffer), 1)
    job = int(rows * (per_row + smashed_row)) + 2 * adam_state_bytes(aux)
    return [
        Part("alignment job: buffer, g*, AM optimizer copies", job, "align", on_device=False),
        Part(
            f"alignment: fitting an AM on {chunk} rows",
            probed.lines["align_fit"].at(chunk),
            "align",
        ),
    ]
