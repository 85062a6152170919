"""Tasks: what a model family owns (batch, upload payload, loss, metrics)."""

from fslsage_ray.tasks.base import Batch, Payload, PayloadSizes, Task, TaskData, forward
from fslsage_ray.tasks.classification import CROSS_ENTROPY, ImageClassification, ImageSpec

__all__ = [
    "CROSS_ENTROPY",
    "Batch",
    "ImageClassification",
    "ImageSpec",
    "Payload",
    "PayloadSizes",
    "Task",
    "TaskData",
    "forward",
]
