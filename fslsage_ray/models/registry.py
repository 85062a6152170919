"""Image models by name, read from the one registry (fslsage_ray.registry): `cnn`,
`resnet18` and any registered family that builds from image shapes.

There is no table here: a name is a model family registered with
`fslsage_ray.registry.register_model`, and a family that builds image models carries its
builder and the AM shapes it offers (models/families.py).
"""

from __future__ import annotations

from fslsage_ray import registry
from fslsage_ray.models.errors import ModelError
from fslsage_ray.models.sizes import count_parameters, state_nbytes
from fslsage_ray.models.split import SplitModel

__all__ = [
    "DEFAULT_AUX",
    "ModelError",
    "build_split_model",
    "count_parameters",
    "list_aux",
    "list_models",
    "state_nbytes",
]

DEFAULT_AUX = "two_blocks"


def _image_families() -> dict[str, object]:
    families = {name: registry.model_family(name) for name in registry.model_names()}
    return {n: f for n, f in families.items() if getattr(f, "image_builder", None) is not None}


def list_models() -> list[str]:
    """The registered families that build image models from shapes."""
    return sorted(_image_families())


def _family(name: str):
    found = _image_families().get(name)
    if found is None:
        raise ModelError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return found


def list_aux(model: str) -> list[str]:
    """Auxiliary-model names valid for ``model``, smallest first."""
    return list(_family(model).aux_names)


def check_names(name: str, aux: str) -> None:
    """Refuse an unknown model or AM name (cheap: nothing is built)."""
    names = _family(name).aux_names
    if aux not in names:
        raise ModelError(f"unknown aux model {aux!r} for {name}; choose one of: {', '.join(names)}")


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
    return _family(name).image_builder(num_classes, in_channels, image_size, aux)
