"""Model families by name (`model.name`): how each builds its split model for a task.

A family states which task type it serves, so a mismatch (a text data set with an image
model) is refused before anything is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from fslsage_ray.config.schema import ModelConfig
from fslsage_ray.models.errors import ModelError
from fslsage_ray.models.registry import build_split_model
from fslsage_ray.models.split import SplitModel
from fslsage_ray.tasks.base import Task
from fslsage_ray.tasks.classification import ImageClassification


@dataclass(frozen=True)
class ModelFamily:
    """Builds (client part, server part, AM factory) for a task; init from the global RNG."""

    task_type: type[Task]
    build_parts: Callable[[Task, ModelConfig], SplitModel]

    def build(self, task: Task, model: ModelConfig) -> SplitModel:
        if not isinstance(task, self.task_type):
            raise ModelError(
                f"model {model.name!r} serves {self.task_type.__name__} tasks; the data set "
                f"gives a {type(task).__name__} task"
            )
        return replace(self.build_parts(task, model), task=task)


def _image_model(name: str) -> ModelFamily:
    def build(task: ImageClassification, model: ModelConfig) -> SplitModel:
        return build_split_model(
            name, task.num_classes, task.in_channels, task.image_size, aux=model.aux
        )

    return ModelFamily(ImageClassification, build)


CNN = _image_model("cnn")
RESNET18 = _image_model("resnet18")
