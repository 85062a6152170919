"""Every name a config may use (algorithms, model families, data sets), in one torch-free place.

Built-in entries are "module:attribute" strings, so reading the names (config validation,
run folders, plots) imports no torch. A user adds their own from their own module:

    from fslsage_ray.registry import register_algorithm
    register_algorithm("my_method", "my_package.my_module:MyAlgorithm", label="My method")

and names that module in the config's top-level `plugins: [my_package.my_module]`, so that
every process (the driver and each Ray actor) imports it before it reads the config.
Installed packages may instead declare an entry point in the group `fslsage_ray.plugins`
(the module is imported when the registry is first read).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

ENTRY_POINT_GROUP = "fslsage_ray.plugins"


@dataclass(frozen=True)
class Entry:
    target: Any  # the object itself, or "module:attribute" to import on first use
    label: str

    def resolve(self) -> Any:
        if not isinstance(self.target, str):
            return self.target
        module, _, attribute = self.target.partition(":")
        obj = importlib.import_module(module)
        for part in attribute.split("."):
            obj = getattr(obj, part)
        return obj


_ALGORITHMS: dict[str, Entry] = {
    "fsl_sage": Entry("fslsage_ray.algorithms.fsl_sage:FslSage", "FSL-SAGE"),
    "fsl_sage_lazy": Entry("fslsage_ray.algorithms.fsl_sage:LazyFslSage", "FSL-SAGE (lazy)"),
    "fedavg": Entry("fslsage_ray.algorithms.fedavg:FedAvg", "FedAvg"),
    "sflv1": Entry("fslsage_ray.algorithms.sflv1:SplitFedMS", "SplitFed-MS"),
    "sflv2": Entry("fslsage_ray.algorithms.sflv2:SplitFedSS", "SplitFed-SS"),
    "cse_fsl": Entry("fslsage_ray.algorithms.cse_fsl:CseFsl", "CSE-FSL"),
    "fsl_an": Entry("fslsage_ray.algorithms.fsl_an:FslAn", "FSL-AN"),
}
_MODELS: dict[str, Entry] = {
    "cnn": Entry("fslsage_ray.models.families:CNN", "split CNN"),
    "resnet18": Entry("fslsage_ray.models.families:RESNET18", "split ResNet-18"),
    "gpt2": Entry("fslsage_ray.models.families:GPT2", "split GPT-2 with LoRA"),
}
_DATASETS: dict[str, Entry] = {
    "digits": Entry("fslsage_ray.data.sources:load_digits_source", "Digits"),
    "cifar10": Entry("fslsage_ray.data.sources:load_cifar_source", "CIFAR-10"),
    "cifar100": Entry("fslsage_ray.data.sources:load_cifar_source", "CIFAR-100"),
    "parquet": Entry("fslsage_ray.data.sources:load_parquet_source", "Parquet images"),
    "e2e": Entry("fslsage_ray.data.sources:load_e2e_source", "E2E NLG"),
}
_entry_points_loaded = False


class RegistryError(ValueError):
    """An unknown name or a plugin module that cannot be imported."""


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        loaded = point.load()
        if callable(loaded):
            loaded()


def load_plugins(modules: Iterable[str]) -> None:
    """Import the user's modules that register names (a config's `plugins`)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise RegistryError(f"plugin module {module!r} cannot be imported: {exc}") from exc


def _register(table: dict[str, Entry], kind: str, name: str, target: Any, label: str | None):
    if not name or not name.replace("_", "").isalnum():
        raise RegistryError(f"a {kind} name must be letters, digits and '_', got {name!r}")
    existing = table.get(name)
    if existing is not None and existing.target != target:
        raise RegistryError(f"{kind} {name!r} is already registered ({existing.target!r})")
    table[name] = Entry(target, label or name)


def register_algorithm(name: str, target: Any, label: str | None = None) -> None:
    """An Algorithm subclass (or "module:Class") under `algorithm.name`."""
    _register(_ALGORITHMS, "algorithm", name, target, label)


def register_model(name: str, target: Any, label: str | None = None) -> None:
    """A ModelFamily (or "module:attribute") under `model.name`."""
    _register(_MODELS, "model family", name, target, label)


def register_dataset(name: str, target: Any, label: str | None = None) -> None:
    """A data source, `f(config) -> TaskData` (or "module:function"), under `data.name`."""
    _register(_DATASETS, "data set", name, target, label)


def algorithm_names() -> tuple[str, ...]:
    _load_entry_points()
    return tuple(_ALGORITHMS)


def model_names() -> tuple[str, ...]:
    _load_entry_points()
    return tuple(_MODELS)


def dataset_names() -> tuple[str, ...]:
    _load_entry_points()
    return tuple(_DATASETS)


def method_label(name: str, lazy: bool = False) -> str:
    """The name a reader of the paper knows; lazy FSL-SAGE is a method of its own."""
    if name == "fsl_sage" and lazy:
        name = "fsl_sage_lazy"
    entry = _ALGORITHMS.get(name)
    return entry.label if entry else name


def dataset_label(name: str) -> str:
    entry = _DATASETS.get(name)
    return entry.label if entry else name


def _resolve(table: dict[str, Entry], kind: str, name: str) -> Any:
    _load_entry_points()
    if name not in table:
        raise RegistryError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(table))}")
    return table[name].resolve()


def algorithm_class(name: str) -> Any:
    return _resolve(_ALGORITHMS, "algorithm", name)


def model_family(name: str) -> Any:
    return _resolve(_MODELS, "model", name)


def dataset_source(name: str) -> Any:
    return _resolve(_DATASETS, "data set", name)
