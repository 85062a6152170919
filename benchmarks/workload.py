"""The workload of issue 12's comparisons, built from the project's own pieces.

Flower's app (`flower_app.py`, in Flower's own virtual environment) and the plain loop
(`floor.py`) must compute exactly what `fslsage-ray run` computes: the same images in the
same clients, the same initial ResNet-18, the same Adam, the same batches and the same test
images. So both take them from here, and here takes them from fslsage_ray's config, subset,
partition, model and optimizer code. Only modules that do not import Ray are used: the Flower
environment has its own Ray.

Only the rows a caller needs are decoded (a client decodes its 500 images, not 50,000), but
the rows are chosen exactly as `fslsage_ray.experiment.load_data` and `partition` choose them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from fslsage_ray.algorithms.client_view import ClientView
from fslsage_ray.algorithms.fedavg import WholeModel
from fslsage_ray.algorithms.optim import make_optimizer
from fslsage_ray.config import Config, load_config
from fslsage_ray.data.cifar import IMAGENET_MEAN, IMAGENET_STD, NUM_CLASSES, parquet_paths
from fslsage_ray.data.parquet_images import decode_images
from fslsage_ray.data.subset import subset_rows
from fslsage_ray.experiment import WorldSpec, build_template, partition
from fslsage_ray.models import SplitModel
from fslsage_ray.seeding import generator
from fslsage_ray.tasks.base import Arrays, forward
from fslsage_ray.tasks.classification import IMAGES, LABELS, ImageClassification, ImageSpec

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "cifar10" / "fsl_sage.yaml"
DEFAULT_DATA = REPO.parent / "shared" / "data"


@dataclass(frozen=True)
class Sizes:
    """What the issue's default layout fixes: 10 clients x 500 images, 2,000 test images."""

    clients: int = 10
    samples_per_client: int = 500
    test_size: int = 2000
    rounds: int = 3

    def __post_init__(self) -> None:
        for name in ("clients", "samples_per_client", "test_size", "rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def overrides(
    sizes: Sizes, data_dir: Path, algorithm: str, augment: bool | None, extra: Sequence[str] = ()
) -> list[str]:
    """The `section.key=value` overrides of configs/cifar10/fsl_sage.yaml for this workload;
    augment None keeps the data set's default (crop and flip for CIFAR)."""
    out = [
        f"data.data_dir={data_dir}",
        f"data.train_subset={sizes.clients * sizes.samples_per_client}",
        f"data.test_subset={sizes.test_size}",
        f"algorithm.num_clients={sizes.clients}",
        f"algorithm.name={algorithm}",
        f"run.rounds={sizes.rounds}",
        "runtime.actor_num_gpus=0",
        "runtime.server_num_gpus=0",
    ]
    if augment is not None:
        out.append(f"data.augment={str(augment).lower()}")
    return [*out, *extra]


def workload_config(over: Sequence[str]) -> Config:
    return load_config(CONFIG, list(over))


def _task(config: Config) -> ImageClassification:
    if config.data.name not in NUM_CLASSES:
        raise ValueError(f"the benchmark workload is CIFAR, got data.name={config.data.name}")
    augment = True if config.data.augment is None else config.data.augment  # CIFAR's default
    spec = ImageSpec(255.0, IMAGENET_MEAN, IMAGENET_STD, augment)
    return ImageClassification(spec, NUM_CLASSES[config.data.name], 3, 32)


def _read(table: pa.Table, rows: np.ndarray | None) -> Arrays:
    """Decode only `rows` (all when None) of one parquet split."""
    if rows is not None:
        table = table.take(rows)
    labels = table.column("label").to_numpy().astype(np.int64)
    images = decode_images(table.column("image").to_pylist(), expected_hw=(32, 32))
    return {IMAGES: images, LABELS: labels}


def _labels(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the benchmark needs CIFAR-10 in parquet form")
    return pq.read_table(path, columns=["label"]).column("label").to_numpy().astype(np.int64)


class Workload:
    """One configuration's data, task and models, decoded lazily and only where needed."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.task = _task(config)
        self.train_path, self.test_path = parquet_paths(config.data.name, config.data.data_dir)
        seed = config.run.seed
        labels = _labels(self.train_path)
        rows = subset_rows(labels, config.data.train_subset, seed)
        self.train_rows = np.arange(len(labels)) if rows is None else rows
        self.parts = partition(config, labels[self.train_rows])  # indices into train_rows
        self.test_rows = subset_rows(_labels(self.test_path), config.data.test_subset, seed + 1)
        self._train_table: pa.Table | None = None  # the encoded split, read once

    def _train(self) -> pa.Table:
        if self._train_table is None:
            self._train_table = pq.read_table(self.train_path, columns=["image", "label"])
        return self._train_table

    @property
    def num_clients(self) -> int:
        return len(self.parts)

    def client_sizes(self) -> list[int]:
        return [len(p) for p in self.parts]

    def client_view(self, cid: int) -> ClientView:
        """Client cid's images only (decoded now), as a view the project's batching reads."""
        arrays = _read(self._train(), self.train_rows[self.parts[cid]])
        return ClientView(arrays, np.arange(len(self.parts[cid])), self.task)

    def all_views(self) -> list[ClientView]:
        """Every client's view over one decoded array (the floor keeps them all)."""
        arrays = _read(self._train(), self.train_rows)
        return [ClientView(arrays, np.asarray(p), self.task) for p in self.parts]

    def test_arrays(self) -> Arrays:
        return _read(pq.read_table(self.test_path, columns=["image", "label"]), self.test_rows)

    def template(self) -> SplitModel:
        """The seeded initial split model every process builds identically."""
        return build_template(WorldSpec(self.config, self.task))

    def client_generator(self, cid: int) -> torch.Generator:
        """The client's own RNG, as the simulator seeds it (batch order, augmentation)."""
        return generator(self.config.run.seed, "client", cid)

    def optimizer(self, params, steps_per_round: int | None = None) -> torch.optim.Optimizer:
        o = self.config.optim
        return make_optimizer(params, o.lr, o, o.weight_decay, steps_per_round)

    def aux_optimizer(self, params) -> torch.optim.Optimizer:
        o = self.config.optim
        return make_optimizer(params, o.aux_lr, o, o.aux_weight_decay)


def full_model(template: SplitModel) -> WholeModel:
    """FedAvg's model: client part then server part (a whole ResNet-18), a fresh copy."""
    return WholeModel(copy.deepcopy(template.client), copy.deepcopy(template.server))


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    view: ClientView,
    gen: torch.Generator,
    batch_size: int,
) -> float:
    """One local epoch of FedAvg, the loop FullModelClient runs; returns the mean loss."""
    model.train()
    device = torch.device("cpu")
    task, loss_sum, steps = view.task, 0.0, 0
    for idx in view.shuffled_batches(batch_size, gen):
        batch = view.batch(idx, gen, device)
        loss = task.loss(forward(model, batch.inputs, batch.context), batch.targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach())
        steps += 1
    return loss_sum / max(steps, 1)


def evaluate(task, client: torch.nn.Module, server: torch.nn.Module, test: Arrays, batch_size: int):
    """The project's test metrics (eval mode, the run's eval batch size)."""
    from fslsage_ray.algorithms.evaluate import evaluate_split

    return evaluate_split(task, client, server, test, batch_size, torch.device("cpu"))
