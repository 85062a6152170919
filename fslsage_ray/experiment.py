"""Driver-side preparation shared by every backend: data once, partition once, model shapes.

Everything a worker needs to rebuild its part of the experiment identically travels in a
`WorldSpec` (small, picklable); the large arrays travel separately (as Ray object refs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from fslsage_ray.algorithms.base import ModelSizes
from fslsage_ray.algorithms.client_view import ImageSpec
from fslsage_ray.config.schema import Config, ConfigError
from fslsage_ray.data import (
    DataBundle,
    client_sizes,
    load_cifar,
    load_digits_data,
    load_parquet_images,
    partition_dirichlet,
    partition_iid,
    partition_shards,
    take_subset,
)
from fslsage_ray.data.dataset import DataBundle as _Bundle
from fslsage_ray.models import SplitModel, build_split_model, state_nbytes
from fslsage_ray.seeding import seeded_init


@dataclass(frozen=True)
class ModelShape:
    num_classes: int
    in_channels: int
    image_size: int


@dataclass(frozen=True)
class WorldSpec:
    """What every process needs (besides the arrays) to build the same models and clients."""

    config: Config
    image_spec: ImageSpec
    shape: ModelShape


def load_data(config: Config) -> DataBundle:
    """The configured data set, subset as asked; raises DataError on bad data."""
    data = config.data
    if data.name == "digits":
        bundle = load_digits_data()
    elif data.name in ("cifar10", "cifar100"):
        bundle = load_cifar(data.name, data.data_dir, download=data.download)
    else:
        train = load_parquet_images(data.train_path, num_classes=data.num_classes)
        test = load_parquet_images(
            data.test_path, num_classes=data.num_classes, expected_hw=train.images.shape[1:3]
        )
        # Reductions accumulate in float64 without a float copy of the whole image array.
        mean = tuple(float(v) / 255.0 for v in train.images.mean(axis=(0, 1, 2), dtype=np.float64))
        std = tuple(float(v) / 255.0 for v in train.images.std(axis=(0, 1, 2), dtype=np.float64))
        bundle = _Bundle(train, test, data.num_classes, mean, std, False, 255.0, "parquet")
    seed = config.run.seed
    train = take_subset(bundle.train, data.train_subset, seed)
    test = take_subset(bundle.test, data.test_subset, seed + 1)
    return _Bundle(
        train,
        test,
        bundle.num_classes,
        bundle.mean,
        bundle.std,
        bundle.augment if data.augment is None else data.augment,
        bundle.max_value,
        bundle.name,
    )


def partition(config: Config, labels: np.ndarray) -> list[np.ndarray]:
    """Index arrays, one per client, made once on the driver."""
    m, seed, data = config.algorithm.num_clients, config.run.seed, config.data
    if data.partition == "iid":
        return partition_iid(labels, m, seed)
    if data.partition == "dirichlet":
        return partition_dirichlet(labels, m, data.alpha, seed)
    return partition_shards(labels, m, data.shards_per_client, seed)


def world_spec(config: Config, bundle: DataBundle) -> WorldSpec:
    images = bundle.train.images
    if images.shape[1] != images.shape[2]:
        raise ConfigError(f"images must be square, got {images.shape[1]}x{images.shape[2]}")
    spec = ImageSpec(bundle.max_value, tuple(bundle.mean), tuple(bundle.std), bundle.augment)
    return WorldSpec(config, spec, ModelShape(bundle.num_classes, images.shape[3], images.shape[1]))


def build_template(world: WorldSpec) -> SplitModel:
    """The initial split model, identical in every process (seeded from the run seed)."""
    cfg = world.config
    with seeded_init(cfg.run.seed, "model"):
        return build_split_model(
            cfg.model.name,
            world.shape.num_classes,
            world.shape.in_channels,
            world.shape.image_size,
            aux=cfg.model.aux,
        )


def build_aux(template: SplitModel, seed: int, cid: int) -> nn.Module:
    """Client cid's initial AM; the client and the server build the same one independently."""
    with seeded_init(seed, "aux", cid):
        return template.make_aux()


def model_sizes(world: WorldSpec, template: SplitModel | None = None) -> ModelSizes:
    template = template or build_template(world)
    aux = build_aux(template, world.config.run.seed, 0)
    numel = int(np.prod(template.cut_shape))
    return ModelSizes(
        state_nbytes(template.client), state_nbytes(template.server), state_nbytes(aux), numel * 4
    )


def shared_aux(world: WorldSpec, template: SplitModel) -> nn.Module:
    """The AM every client starts from when AMs are averaged (CSE-FSL, FSL-AN)."""
    with seeded_init(world.config.run.seed, "aux", "shared"):
        return template.make_aux()


CIFAR_SHAPES = {
    "cifar10": (50_000, ModelShape(10, 3, 32)),
    "cifar100": (50_000, ModelShape(100, 3, 32)),
}


def planned_sizes(config: Config) -> tuple[list[int], ModelSizes]:
    """Client sample counts and model byte sizes, without decoding CIFAR when avoidable."""
    data = config.data
    if data.name in CIFAR_SHAPES and data.partition != "shards":
        n_train, shape = CIFAR_SHAPES[data.name]
        if data.train_subset is not None:
            n_train = min(n_train, data.train_subset)
        sizes = client_sizes(n_train, config.algorithm.num_clients)
        spec = ImageSpec(255.0, (0.0,) * 3, (1.0,) * 3, False)
        return [int(s) for s in sizes], model_sizes(WorldSpec(config, spec, shape))
    bundle = load_data(config)
    parts = partition(config, bundle.train.labels)
    return [len(p) for p in parts], model_sizes(world_spec(config, bundle))
