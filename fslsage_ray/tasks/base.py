"""What a model family's task owns: its batches, its upload payload, its loss and its metrics.

Algorithms and runtime see only these types, so a new family (images, text, ...) touches
data/, models/ and its task, nothing in algorithms/, runtime/, simulation.py or outputs/.

A forward pass is always `part(inputs, **context)`: the context holds what every part needs
besides its input (an attention mask for text; nothing for images, so image models are
called exactly as plain PyTorch modules).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from fslsage_ray.tasks.compute import as_float32, autocast_for, compute_of, prepare_input

Arrays = Mapping[str, np.ndarray]  # a split's named arrays, all with the samples first


@dataclass
class Batch:
    """One batch as the client sees it: model inputs, targets, and the shared context."""

    inputs: torch.Tensor
    targets: torch.Tensor
    context: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.targets.shape[0])


# A payload's array: numpy to cross processes, the client's own tensor within one.
PayloadArray = np.ndarray | torch.Tensor


@dataclass
class Payload:
    """An upload: everything the server needs to continue the forward pass.

    Between processes (Ray) it holds numpy arrays, which cross zero-copy. Within one process
    (the in-process backend) it holds the client's tensors where they are, on a GPU too, so
    an upload costs no copy to the host and back. Bytes are booked as the spec counts them:
    the smashed activations and the context (e.g. the attention mask) as `smashed`, the
    targets as `labels` (only when run.count_labels is set).
    """

    smashed: PayloadArray
    targets: PayloadArray
    context: dict[str, PayloadArray] = field(default_factory=dict)

    @classmethod
    def of(cls, smashed: torch.Tensor, batch: Batch, to_host: bool = True) -> Payload:
        if not to_host:
            return cls(smashed.detach(), batch.targets, dict(batch.context))
        return cls(
            smashed.detach().cpu().numpy(),
            batch.targets.cpu().numpy(),
            {k: v.cpu().numpy() for k, v in batch.context.items()},
        )

    @property
    def smashed_nbytes(self) -> int:
        return int(self.smashed.nbytes) + sum(int(v.nbytes) for v in self.context.values())

    @property
    def targets_nbytes(self) -> int:
        return int(self.targets.nbytes)

    def tensors(
        self, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(smashed, targets, context) on `device`, always copies: Ray's buffers are read-only,
        and a client's own tensors must not change if the server works on them in place."""
        z = _copy_to(self.smashed, device)
        y = _copy_to(self.targets, device, torch.int64)
        context = {k: _copy_to(v, device) for k, v in self.context.items()}
        return z, y, context


def _copy_to(
    x: PayloadArray, device: torch.device, dtype: torch.dtype | None = None
) -> torch.Tensor:
    if isinstance(x, torch.Tensor):  # strides kept (channels-last stays channels-last)
        return x.to(device=device, dtype=dtype, copy=True)
    return torch.as_tensor(np.array(x), dtype=dtype, device=device)


@dataclass(frozen=True)
class PayloadSizes:
    """Per-sample bytes of an upload, from shapes alone (for `plan`)."""

    smashed: int  # the cut-layer activations (also what a returned gradient costs)
    context: int  # masks and the like, booked with the activations
    targets: int  # booked as labels only when run.count_labels is set


class Task(ABC):
    """A model family's task; small and picklable, so it travels to every worker."""

    headline: ClassVar[str]  # the metric a run is judged by, e.g. "test_acc"
    goal: ClassVar[str]  # "max" or "min": which way the headline improves
    metric_names: ClassVar[tuple[str, ...]]  # what `evaluate` returns, in column order
    stochastic_steps: ClassVar[bool] = False  # its models draw random numbers while training
    # (dropout): every step then seeds them from where it is in the run (algorithms/optim.py)

    def fingerprint(self) -> str:
        """What a checkpoint must agree with beyond the config (e.g. the vocabulary)."""
        return ""

    def save_artifacts(self, folder: Path) -> None:  # noqa: B027 - most tasks have none
        """Files a run folder should keep to be read later (e.g. the tokenizer)."""

    # --- data ----------------------------------------------------------------------------
    @abstractmethod
    def batch(
        self,
        arrays: Arrays,
        idx: np.ndarray,
        generator: torch.Generator | None,
        train: bool,
        device: torch.device,
    ) -> Batch:
        """Rows `idx` of a split as a model-ready batch (augmented only when training)."""

    def num_samples(self, arrays: Arrays) -> int:
        return len(next(iter(arrays.values())))

    # --- loss ----------------------------------------------------------------------------
    @abstractmethod
    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss (a mean over `loss_count` units) for steps and gradients."""

    @abstractmethod
    def loss_count(self, targets: torch.Tensor) -> int:
        """How many units `loss` averages over (samples, target tokens)."""

    # --- evaluation ----------------------------------------------------------------------
    # A task that can give each test batch's additive terms (loss sum, correct count) lets
    # the backend share the batches out over its workers; the terms are added up in batch
    # order, so the metrics are the same however they were shared.
    batched_evaluation: ClassVar[bool] = False

    def evaluate(
        self,
        client: nn.Module,
        server: nn.Module,
        arrays: Arrays,
        batch_size: int,
        device: torch.device,
    ) -> dict[str, float]:
        """Test metrics of client part + server part, keyed by `metric_names`. A task
        without `batched_evaluation` overrides this."""
        rows = self.num_samples(arrays)
        sums = [
            self.eval_batch_sums(client, server, arrays, start, stop, device)
            for start, stop in batch_ranges(rows, batch_size)
        ]
        return self.eval_metrics(add_sums(sums), rows)

    def eval_batch_sums(
        self,
        client: nn.Module,
        server: nn.Module,
        arrays: Arrays,
        start: int,
        stop: int,
        device: torch.device,
    ) -> Sums:
        """The additive terms of test rows [start, stop) (with `batched_evaluation`)."""
        raise NotImplementedError(f"{type(self).__name__} does not evaluate in batches")

    def eval_metrics(self, sums: Sums, rows: int) -> dict[str, float]:
        """Metrics from the terms added up over all `rows` test rows."""
        raise NotImplementedError(f"{type(self).__name__} does not evaluate in batches")

    # --- accounting ----------------------------------------------------------------------
    @abstractmethod
    def payload_sizes(self, cut_shape: tuple[int, ...]) -> PayloadSizes:
        """What one sample's upload costs, for a cut of this per-sample shape."""


def forward(module: nn.Module, inputs: torch.Tensor, context: Mapping[str, torch.Tensor]):
    """`module(inputs, **context)`: every split part takes the batch's context. A part built
    to compute in bf16 or channels-last (tasks.compute) does so here, and returns float32."""
    if compute_of(module).plain:
        return module(inputs, **context)
    with autocast_for(module, inputs.device.type):
        return as_float32(module(prepare_input(module, inputs), **context))


@dataclass(frozen=True)
class TaskData:
    """A data source's output: both splits as named arrays, and the task that reads them.

    `train_keys`/`test_keys` hold one integer per row (the class for images, a group such
    as the restaurant for text): what subsets are balanced over and non-IID splits use.
    """

    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    train_keys: np.ndarray
    test_keys: np.ndarray
    task: Task
    name: str
    files: tuple[str, ...] = ()  # the files read, hashed into the run's provenance


Sums = dict[str, float]  # one test batch's additive terms


def batch_ranges(rows: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, stop) of each evaluation batch."""
    return [(start, min(start + batch_size, rows)) for start in range(0, rows, batch_size)]


def add_sums(parts: Sequence[Sums]) -> Sums:
    """Batch terms added up in batch order: the same floating-point sums as one loop."""
    total = dict(parts[0])
    for part in parts[1:]:
        for key, value in part.items():
            total[key] += value
    return total
