"""Test-set evaluation of the aggregated client model followed by the server model."""

from __future__ import annotations

from torch import nn

from fslsage_ray.tasks.base import Arrays, Task


def evaluate_split(
    task: Task,
    client_model: nn.Module,
    server_model: nn.Module,
    arrays: Arrays,
    batch_size: int,
    device,
) -> dict[str, float]:
    """The task's test metrics in eval mode (the AMs are never used at test time); the
    models' train/eval modes are left as they were."""
    was_training = client_model.training, server_model.training
    client_model.eval()
    server_model.eval()
    try:
        return task.evaluate(client_model, server_model, arrays, batch_size, device)
    finally:
        client_model.train(was_training[0])
        server_model.train(was_training[1])
