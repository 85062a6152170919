"""Split models (client part, server part, auxiliary-model factory) and their size accounting."""

from fslsage_ray.models.errors import ModelError
from fslsage_ray.models.registry import (
    AUX_MODELS,
    MODELS,
    build_split_model,
    list_aux,
    list_models,
)
from fslsage_ray.models.sizes import count_parameters, state_nbytes
from fslsage_ray.models.split import SplitModel

__all__ = [
    "AUX_MODELS",
    "MODELS",
    "ModelError",
    "SplitModel",
    "build_split_model",
    "count_parameters",
    "list_aux",
    "list_models",
    "state_nbytes",
]
