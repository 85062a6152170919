"""Test-set evaluation of the aggregated client model followed by the server model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from torch import nn

from fslsage_ray.tasks.base import Arrays, Sums, Task


@contextlib.contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm's running statistics, no dropout) for the block; the models'
    train/eval modes are left as they were."""
    was_training = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(models, was_training, strict=True):
            m.train(mode)


def evaluate_split(
    task: Task,
    client_model: nn.Module,
    server_model: nn.Module,
    arrays: Arrays,
    batch_size: int,
    device,
) -> dict[str, float]:
    """The task's test metrics in eval mode (the AMs are never used at test time)."""
    with eval_mode(client_model, server_model):
        return task.evaluate(client_model, server_model, arrays, batch_size, device)


def evaluate_batches(
    task: Task,
    client_model: nn.Module,
    server_model: nn.Module,
    arrays: Arrays,
    ranges: Sequence[tuple[int, int]],
    device,
) -> list[Sums]:
    """One worker's share of an evaluation: the terms of each test batch in `ranges`."""
    with eval_mode(client_model, server_model):
        return [
            task.eval_batch_sums(client_model, server_model, arrays, start, stop, device)
            for start, stop in ranges
        ]
