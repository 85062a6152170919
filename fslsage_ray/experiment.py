"""Driver-side preparation shared by every backend: data once, partition once, model shapes.

Everything a worker needs to rebuild its part of the experiment identically travels in a
`WorldSpec` (small, picklable); the large arrays travel separately (as Ray object refs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from fslsage_ray.algorithms.authors_ledger import AuthorsView, authors_sizes, check_authors_view
from fslsage_ray.algorithms.base import ModelSizes, transfer_state
from fslsage_ray.algorithms.ledger import state_bytes
from fslsage_ray.config.schema import Config
from fslsage_ray.data import client_sizes, partition_dirichlet, partition_iid, partition_shards
from fslsage_ray.data.subset import config_subset
from fslsage_ray.models import SplitModel, state_nbytes
from fslsage_ray.registry import DATA, dataset_source, entry, model_family
from fslsage_ray.seeding import seeded_init
from fslsage_ray.tasks.base import Task, TaskData
from fslsage_ray.tasks.classification import ImageClassification, ImageSpec


@dataclass(frozen=True)
class WorldSpec:
    """What every process needs (besides the arrays) to build the same models and clients."""

    config: Config
    task: Task


def _rows(arrays: dict[str, np.ndarray], rows: np.ndarray | None) -> dict[str, np.ndarray]:
    return arrays if rows is None else {k: v[rows] for k, v in arrays.items()}


def load_data(config: Config) -> TaskData:
    """The configured data set, subset as asked; raises DataError on bad data."""
    data = dataset_source(config.data.name)(config)
    # A source may have kept only these rows already (to decode less); then this keeps all.
    train_rows = config_subset(data.train_keys, config, "train")
    test_rows = config_subset(data.test_keys, config, "test")
    return TaskData(
        _rows(data.train, train_rows),
        _rows(data.test, test_rows),
        data.train_keys if train_rows is None else data.train_keys[train_rows],
        data.test_keys if test_rows is None else data.test_keys[test_rows],
        data.task,
        data.name,
        data.files,
    )


def partition(config: Config, keys: np.ndarray) -> list[np.ndarray]:
    """Index arrays, one per client, made once on the driver (keys: classes or groups)."""
    m, seed, data = config.algorithm.num_clients, config.run.seed, config.data
    if data.partition == "iid":
        return partition_iid(keys, m, seed)
    if data.partition == "dirichlet":
        return partition_dirichlet(keys, m, data.alpha, seed)
    return partition_shards(keys, m, data.shards_per_client, seed)


def build_template(world: WorldSpec) -> SplitModel:
    """The initial split model, identical in every process (seeded from the run seed)."""
    cfg = world.config
    family = model_family(cfg.model.name)
    with seeded_init(cfg.run.seed, "model"):
        return family.build(world.task, cfg.model)


def check_models(world: WorldSpec) -> None:
    """Refuse a model the task cannot use, or an unknown model or AM name, without building
    anything (the run checks this before it starts Ray)."""
    check = getattr(model_family(world.config.model.name), "check", None)
    if check is not None:  # a family of one's own may only know how to build
        check(world.task, world.config.model)


def initial_aux(template: SplitModel, seed: int) -> nn.Module:
    """The AM every client starts from: one draw for all, as in the authors' code. Each
    call builds a fresh module with the same weights, so the client, the server and the
    fed server (CSE-FSL, FSL-AN) build it independently and no message is booked for it."""
    with seeded_init(seed, "aux", "shared"):
        return template.make_aux()


def model_sizes(world: WorldSpec, template: SplitModel | None = None) -> ModelSizes:
    template = template or build_template(world)
    aux = initial_aux(template, world.config.run.seed)
    mode = world.config.model.transfer
    return ModelSizes(
        state_bytes(transfer_state(template.client, mode)),
        state_bytes(transfer_state(template.server, mode)),
        state_nbytes(aux),
        world.task.payload_sizes(template.cut_shape),
        state_nbytes(template.client),
        state_nbytes(template.server),
    )


def planned_sizes(config: Config) -> tuple[list[int], ModelSizes]:
    """Client sample counts and model byte sizes, without decoding the data set where its
    registration gives its shape (CIFAR's)."""
    data = config.data
    registered = entry(DATA, data.name)
    shape = registered.shape if registered is not None else None
    if shape is not None and data.partition != "shards":
        n_train = shape.train_size
        if data.train_subset is not None:
            n_train = min(n_train, data.train_subset)
        sizes = client_sizes(n_train, config.algorithm.num_clients)
        spec = ImageSpec(255.0, (0.0,) * shape.channels, (1.0,) * shape.channels, False)
        task = ImageClassification(spec, shape.num_classes, shape.channels, shape.image_size)
        return [int(s) for s in sizes], model_sizes(WorldSpec(config, task))
    task_data = load_data(config)
    parts = partition(config, task_data.train_keys)
    return [len(p) for p in parts], model_sizes(WorldSpec(config, task_data.task))


def authors_view(config: Config, task: Task, sizes: ModelSizes) -> AuthorsView:
    """This run's messages priced as the authors' GPT-2 code books them (a language-model
    task's vocabulary and sequence length; run.authors_ledger, plan --ledger authors)."""
    return AuthorsView(authors_sizes(config, task.vocab_size, task.seq_len), sizes.payload)


def planned_authors_view(config: Config, sizes: ModelSizes) -> AuthorsView:
    """authors_view for the plan: refused before any data is read where it does not apply."""
    check_authors_view(config)
    return authors_view(config, load_data(config).task, sizes)
