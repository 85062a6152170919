"""Every name a config may use (algorithms, model families, data sets), in one torch-free place.

This is the one registry: the CLI, the config loader and run-folder readers ask it for names
and labels; the run asks it for the class, family or source behind a name. Built-in entries
are "module:attribute" strings, so reading the names (config validation, run folders, plots)
imports no torch. A user adds their own from their own module:

    from fslsage_ray.registry import register_algorithm
    register_algorithm("my_method", "my_package.my_module:MyAlgorithm", label="My method",
                       settings=MySettings)

and names that module in the config's top-level `plugins: [my_package.my_module]`, so that
every process (the driver and each Ray actor) imports it before it reads the config.
Installed packages may instead declare an entry point in the group `fslsage_ray.plugins`
(the module is imported when the registry is first read).

An entry may own a frozen settings dataclass: its fields are read from a sub-section of the
owner's config section, named `section` (by default the entry's name), e.g.
`algorithm: {name: fsl_sage, alignment: {every: 5}}` or `model: {name: gpt2, gpt2: {...}}`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

ENTRY_POINT_GROUP = "fslsage_ray.plugins"
ALGORITHM, MODEL, DATA = "algorithm", "model", "data"  # the config sections owners live in
PROBE = "probes"  # probes (fslsage_ray/probes): their settings sit in `probes.<section>`


def _import(target: Any) -> Any:
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    obj = importlib.import_module(module)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class DataShape:
    """What a planner needs of an image data set without reading it: its training size and
    the shape of one image."""

    train_size: int
    num_classes: int
    channels: int = 3
    image_size: int = 32


@dataclass(frozen=True)
class Entry:
    target: Any  # the object itself, or "module:attribute" to import on first use
    label: str
    settings: Any = None  # a frozen dataclass (or "module:Class") of the owner's own settings
    section: str | None = None  # where they live in the owner's section (None: no settings)
    # Data sets only: the shape known in advance (plans without decoding), the accuracy the
    # paper's comparisons are quoted at, and "module:function" f(config) -> training-set
    # size when it is known without decoding (a study sizes itself with it), else None.
    shape: DataShape | None = None
    accuracy_target: float | None = None
    known_train_size: Any = None

    def resolve(self) -> Any:
        return _import(self.target)

    def settings_class(self) -> type | None:
        return None if self.settings is None else _import(self.settings)


_ALIGNMENT = "fslsage_ray.algorithms.alignment_settings:AlignmentConfig"


def _cifar(label: str, num_classes: int, accuracy_target: float) -> Entry:
    return Entry(
        "fslsage_ray.data.sources:load_cifar_source",
        label,
        shape=DataShape(50_000, num_classes),
        accuracy_target=accuracy_target,
        known_train_size="fslsage_ray.data.sources:cifar_train_size",
    )


_ALGORITHMS: dict[str, Entry] = {
    "fsl_sage": Entry(
        "fslsage_ray.algorithms.fsl_sage:FslSage", "FSL-SAGE", _ALIGNMENT, "alignment"
    ),
    "fsl_sage_lazy": Entry(
        "fslsage_ray.algorithms.fsl_sage:LazyFslSage", "FSL-SAGE (lazy)", _ALIGNMENT, "alignment"
    ),
    "fedavg": Entry("fslsage_ray.algorithms.fedavg:FedAvg", "FedAvg"),
    "sflv1": Entry("fslsage_ray.algorithms.sflv1:SplitFedMS", "SplitFed-MS"),
    "sflv2": Entry("fslsage_ray.algorithms.sflv2:SplitFedSS", "SplitFed-SS"),
    "cse_fsl": Entry("fslsage_ray.algorithms.cse_fsl:CseFsl", "CSE-FSL"),
    "fsl_an": Entry("fslsage_ray.algorithms.fsl_an:FslAn", "FSL-AN"),
}
_MODELS: dict[str, Entry] = {
    "cnn": Entry("fslsage_ray.models.families:CNN", "split CNN"),
    "resnet18": Entry("fslsage_ray.models.families:RESNET18", "split ResNet-18"),
    "gpt2": Entry(
        "fslsage_ray.models.families:GPT2",
        "split GPT-2 with LoRA",
        "fslsage_ray.models.gpt2_settings:Gpt2Config",
        "gpt2",
    ),
}
_DATASETS: dict[str, Entry] = {
    "digits": Entry("fslsage_ray.data.sources:load_digits_source", "Digits"),
    # CIFAR: 50,000 training images of 3x32x32; the paper's comparisons read 81% and 50%.
    "cifar10": _cifar("CIFAR-10", 10, 0.81),
    "cifar100": _cifar("CIFAR-100", 100, 0.50),
    "parquet": Entry("fslsage_ray.data.sources:load_parquet_source", "Parquet images"),
    "e2e": Entry("fslsage_ray.data.sources:load_e2e_source", "E2E NLG"),
}
_PROBES: dict[str, Entry] = {
    "dcor": Entry(
        "fslsage_ray.probes.dcor:DistanceCorrelationProbe",
        "distance correlation",
        "fslsage_ray.probes.settings:DcorSettings",
        "dcor",
    ),
    "stealing": Entry(
        "fslsage_ray.probes.stealing:StealingProbe",
        "model stealing",
        "fslsage_ray.probes.settings:StealingSettings",
        "stealing",
    ),
    "exposure": Entry("fslsage_ray.probes.exposure:ExposureProbe", "exposure"),
    "reconstruction": Entry(
        "fslsage_ray.probes.reconstruction:ReconstructionProbe",
        "reconstruction",
        "fslsage_ray.probes.settings:ReconstructionSettings",
        "reconstruction",
    ),
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


def _register(table: dict[str, Entry], kind: str, name: str, entry: Entry) -> None:
    if not name or not name.replace("_", "").isalnum():
        raise RegistryError(f"a {kind} name must be letters, digits and '_', got {name!r}")
    existing = table.get(name)
    if existing is not None and existing.target != entry.target:
        raise RegistryError(f"{kind} {name!r} is already registered ({existing.target!r})")
    if entry.section is not None:
        if not entry.section.replace("_", "").isalnum():
            raise RegistryError(f"{kind} {name!r}: a settings section must be a plain name")
        for other_name, other in table.items():
            if other.section == entry.section and other.settings != entry.settings:
                raise RegistryError(
                    f"{kind} {name!r}: settings section {entry.section!r} already belongs to "
                    f"{other_name!r} with other settings ({other.settings!r})"
                )
    table[name] = entry


def _entry(
    name: str,
    target: Any,
    label: str | None,
    settings: Any = None,
    section: str | None = None,
    **data: Any,
) -> Entry:
    """An entry; its settings (if any) in the sub-section `section`, by default the name."""
    where = None if settings is None else (section or name)
    return Entry(target, label or name, settings, where, **data)


def register_algorithm(name: str, target: Any, label: str | None = None, **owned: Any) -> None:
    """An Algorithm subclass (or "module:Class") under `algorithm.name`. `settings=`: a frozen
    dataclass of its own, read from `algorithm.<section>` (`section=`, default: the name)."""
    _register(_ALGORITHMS, "algorithm", name, _entry(name, target, label, **owned))


def register_model(name: str, target: Any, label: str | None = None, **owned: Any) -> None:
    """A ModelFamily (or "module:attribute") under `model.name`; `settings=`/`section=` as
    for an algorithm, read from `model.<section>`."""
    _register(_MODELS, "model family", name, _entry(name, target, label, **owned))


def register_dataset(name: str, target: Any, label: str | None = None, **owned: Any) -> None:
    """A data source, `f(config) -> TaskData` (or "module:function"), under `data.name`.
    Besides `settings=`/`section=` (read from `data.<section>`): `shape=DataShape(...)` when
    known without reading the data, `accuracy_target=` (the accuracy comparisons are read
    at) and `known_train_size=` f(config) -> its training size when known without decoding
    (a scaling study asks; None: the study loads the data)."""
    _register(_DATASETS, "data set", name, _entry(name, target, label, **owned))


def register_probe(name: str, target: Any, label: str | None = None, **owned: Any) -> None:
    """A Probe subclass (or "module:Class", fslsage_ray/probes/base.py) under a name that
    `probes.list` may give; `settings=`/`section=` as for an algorithm, read from
    `probes.<section>`."""
    _register(_PROBES, "probe", name, _entry(name, target, label, **owned))


_TABLES = {ALGORITHM: _ALGORITHMS, MODEL: _MODELS, DATA: _DATASETS, PROBE: _PROBES}


def entry(kind: str, name: str) -> Entry | None:
    """The registration of `name` in the config section `kind` (None: not registered)."""
    _load_entry_points()
    return _TABLES[kind].get(name)


def settings_sections(kind: str) -> dict[str, Entry]:
    """Every settings sub-section the owners of `kind` register, with one owner's entry."""
    _load_entry_points()
    return {e.section: e for e in _TABLES[kind].values() if e.section is not None}


def accuracy_target(dataset: str) -> float | None:
    found = entry(DATA, dataset)
    return found.accuracy_target if found else None


def known_train_size(config: Any) -> int | None:
    """The training-set size of the configured data set when known without decoding it."""
    found = entry(DATA, config.data.name)
    if found is None or found.known_train_size is None:
        return None
    return _import(found.known_train_size)(config)


def algorithm_names() -> tuple[str, ...]:
    _load_entry_points()
    return tuple(_ALGORITHMS)


def model_names() -> tuple[str, ...]:
    _load_entry_points()
    return tuple(_MODELS)


def probe_names() -> tuple[str, ...]:
    _load_entry_points()
    return tuple(_PROBES)


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
