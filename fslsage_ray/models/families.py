"""The built-in model families (`model.name`, registered in fslsage_ray.registry): how each
builds its split model for a task.

A family states which task type it serves, so a mismatch (a text data set with an image
model) is refused before anything is built. An image family also carries its builder from
image shapes and the AM shapes `model.aux` may name (models/registry.py reads them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from fslsage_ray.config.schema import ModelConfig
from fslsage_ray.models.cnn import CNN_AUX, build_cnn
from fslsage_ray.models.errors import ModelError
from fslsage_ray.models.registry import build_split_model, check_names
from fslsage_ray.models.resnet import build_resnet18
from fslsage_ray.models.resnet_aux import RESNET18_AUX
from fslsage_ray.models.split import SplitModel
from fslsage_ray.tasks.base import Task
from fslsage_ray.tasks.classification import ImageClassification
from fslsage_ray.tasks.compute import Compute, configure, configured
from fslsage_ray.tasks.language_model import LanguageModelling


@dataclass(frozen=True)
class ModelFamily:
    """Builds (client part, server part, AM factory) for a task; init from the global RNG."""

    task_type: type[Task]
    build_parts: Callable[[Task, ModelConfig], SplitModel]
    check_names: Callable[[ModelConfig], None] = lambda model: None
    # Image families: (num_classes, in_channels, image_size, aux) -> parts, and the AM shapes
    image_builder: Callable[[int, int, int, str], SplitModel] | None = None
    aux_names: tuple[str, ...] = ()

    def check(self, task: Task, model: ModelConfig) -> None:
        """What can be refused without building anything (the task type, names)."""
        if not isinstance(task, self.task_type):
            raise ModelError(
                f"model {model.name!r} serves {self.task_type.__name__} tasks; the data set "
                f"gives a {type(task).__name__} task"
            )
        if model.channels_last and not issubclass(self.task_type, ImageClassification):
            raise ModelError(
                f"model.channels_last applies to image models; {model.name!r} takes "
                f"{self.task_type.__name__} inputs"
            )
        self.check_names(model)

    def build(self, task: Task, model: ModelConfig) -> SplitModel:
        """The parts, each set to compute as model.precision and model.channels_last say."""
        self.check(task, model)
        parts = self.build_parts(task, model)
        compute = Compute(model.precision, model.channels_last)
        return replace(
            parts,
            client=configure(parts.client, compute),
            server=configure(parts.server, compute),
            make_aux=configured(parts.make_aux, compute),
            task=task,
        )


def _image_model(
    name: str, builder: Callable[[int, int, int, str], SplitModel], aux_names: tuple[str, ...]
) -> ModelFamily:
    def build(task: ImageClassification, model: ModelConfig) -> SplitModel:
        return build_split_model(
            name, task.num_classes, task.in_channels, task.image_size, aux=model.aux
        )

    def check(model: ModelConfig) -> None:
        check_names(name, model.aux)

    return ModelFamily(ImageClassification, build, check, builder, aux_names)


CNN = _image_model("cnn", build_cnn, CNN_AUX)
RESNET18 = _image_model("resnet18", build_resnet18, RESNET18_AUX)


def _build_gpt2(task, model: ModelConfig) -> SplitModel:
    from fslsage_ray.models.gpt2 import GPT2Settings, build_gpt2_split

    g = model.gpt2
    settings = GPT2Settings(
        n_layer=g.n_layer,
        n_embd=g.n_embd,
        n_head=g.n_head,
        n_positions=g.n_positions,
        vocab_size=task.vocab_size,
        seq_len=task.seq_len,
        client_blocks=g.client_blocks,
        aux_blocks=g.aux_blocks,
        lora_rank=g.lora_rank,
        lora_alpha=g.lora_alpha,
        lora_dropout=g.lora_dropout,
        dropout=g.dropout,
        pretrained_path=g.pretrained_path,
    )
    return build_gpt2_split(settings)


GPT2 = ModelFamily(LanguageModelling, _build_gpt2)
