"""Model names -> split-model builders: the single entry point the algorithms use."""

from __future__ import annotations

from collections.abc import Callable

from fslsage_ray.models.cnn import CNN_AUX, build_cnn
from fslsage_ray.models.errors import ModelError
from fslsage_ray.models.resnet import build_resnet18
from fslsage_ray.models.resnet_aux import RESNET18_AUX
from fslsage_ray.models.sizes import count_parameters, state_nbytes
from fslsage_ray.models.split import SplitModel

__all__ = [
    "AUX_MODELS",
    "DEFAULT_AUX",
    "MODELS",
    "ModelError",
    "build_split_model",
    "count_parameters",
    "list_aux",
    "list_models",
    "state_nbytes",
]

Builder = Callable[[int, int, int, str], SplitModel]

MODELS: dict[str, Builder] = {"resnet18": build_resnet18, "cnn": build_cnn}
AUX_MODELS: dict[str, tuple[str, ...]] = {"resnet18": RESNET18_AUX, "cnn": CNN_AUX}
DEFAULT_AUX = "two_blocks"


def list_models() -> list[str]:
    return sorted(MODELS)


def _check_model(name: str) -> None:
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")


def list_aux(model: str) -> list[str]:
    """Auxiliary-model names valid for ``model``, smallest first."""
    _check_model(model)
    return list(AUX_MODELS[model])


def check_names(name: str, aux: str) -> None:
    """Refuse an unknown model or AM name (cheap: nothing is built)."""
    _check_model(name)
    if aux not in AUX_MODELS[name]:
        raise ModelError(
            f"unknown aux model {aux!r} for {name}; choose one of: {', '.join(AUX_MODELS[name])}"
        )


def build_split_model(
    name: str, num_classes: int, in_channels: int, image_size: int, aux: str = DEFAULT_AUX
) -> SplitModel:
    """Build model ``name`` cut at its cut layer, with random init from the global torch RNG.

    Everything is checked before any weight is drawn, so a ModelError leaves the RNG untouched.
    """
    check_names(name, aux)
    for label, value in (
        ("num_classes", num_classes),
        ("in_channels", in_channels),
        ("image_size", image_size),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ModelError(f"{label} must be a positive int, got {value!r}")
    return MODELS[name](num_classes, in_channels, image_size, aux)
