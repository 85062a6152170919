"""Algorithms by name (`algorithm.name` in a config), through the one torch-free registry."""

from __future__ import annotations

from fslsage_ray.algorithms.base import Algorithm
from fslsage_ray.config.schema import Config
from fslsage_ray.registry import algorithm_class


def resolved_name(config: Config) -> str:
    """fsl_sage with algorithm.alignment.lazy=true runs as fsl_sage_lazy."""
    name = config.algorithm.name
    return "fsl_sage_lazy" if name == "fsl_sage" and config.alignment.lazy else name


def get_algorithm(config: Config) -> Algorithm:
    cls = algorithm_class(resolved_name(config))
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise TypeError(
            f"algorithm {config.algorithm.name!r} is registered as {cls!r}, which "
            "is not an Algorithm subclass"
        )
    return cls(config)
