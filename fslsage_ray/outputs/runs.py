"""Finished (or running) run folders read back for comparison: config, metrics, and the
two questions the paper asks of them, GiB to reach an accuracy and accuracy within a GiB budget.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from fslsage_ray.outputs.run_dir import CONFIG_FILE, METRICS_FILE

# Columns every comparison needs; a metrics table without them is not from this simulator.
REQUIRED_COLUMNS = ("round", "test_acc", "comm_gib_cum")

# Mirrors the algorithm classes' labels without importing them (they pull in torch).
METHOD_LABELS = {
    "fsl_sage": "FSL-SAGE",
    "fsl_sage_lazy": "FSL-SAGE (lazy)",
    "fedavg": "FedAvg",
    "sflv1": "SplitFed-MS",
    "sflv2": "SplitFed-SS",
    "cse_fsl": "CSE-FSL",
    "fsl_an": "FSL-AN",
}

DATASET_LABELS = {
    "digits": "Digits",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "parquet": "Parquet images",
}


@dataclass(frozen=True)
class RunRecord:
    """One run folder in memory; metrics are plain row dicts sorted by round."""

    path: Path
    config: dict[str, Any]
    metrics: list[dict[str, Any]]

    def _section(self, name: str) -> dict[str, Any]:
        section = self.config.get(name)
        return section if isinstance(section, dict) else {}

    @property
    def name(self) -> str:
        """run.name, or the folder name for configs that lack it."""
        return str(self._section("run").get("name") or self.path.name)

    @property
    def method(self) -> str:
        """The raw algorithm name, e.g. "fsl_sage"."""
        return str(self._section("algorithm").get("name", "unknown"))

    @property
    def lazy(self) -> bool:
        return bool(self._section("algorithm").get("lazy", False))

    @property
    def method_label(self) -> str:
        """The name a reader of the paper knows; lazy FSL-SAGE is a method of its own."""
        label = METHOD_LABELS.get(self.method, self.method)
        if self.method == "fsl_sage" and self.lazy:
            label += " (lazy)"
        return label

    @property
    def dataset(self) -> str:
        return str(self._section("data").get("name", "unknown"))

    @property
    def dataset_label(self) -> str:
        return DATASET_LABELS.get(self.dataset, self.dataset)

    @property
    def partition(self) -> str:
        return str(self._section("data").get("partition", "iid"))

    @property
    def alpha(self) -> float | None:
        """Dirichlet concentration; None unless the partition is Dirichlet (alpha is unused)."""
        if self.partition != "dirichlet":
            return None
        alpha = self._section("data").get("alpha")
        return None if alpha is None else float(alpha)

    @property
    def partition_label(self) -> str:
        """Short description of the client split, e.g. "α=0.1" or "iid"."""
        if self.alpha is not None:
            return f"α={self.alpha:g}"
        return self.partition

    @property
    def rounds(self) -> int:
        """Rounds recorded in metrics (fewer than run.rounds if the run stopped early)."""
        return len(self.metrics)

    def column(self, name: str) -> list[Any]:
        """One metric per round; None where a round lacks it (older or other-method tables)."""
        return [row.get(name) for row in self.metrics]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def is_run_folder(path: str | Path) -> bool:
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / METRICS_FILE).is_file()


def load_run(path: str | Path) -> RunRecord:
    """Read one run folder; errors name the folder and what is missing."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run folder {path} does not exist or is not a folder")
    for name in (CONFIG_FILE, METRICS_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(
                f"{path} is not a run folder: {name} is missing "
                f"(a run folder holds {CONFIG_FILE} and {METRICS_FILE})"
            )
    try:
        config = yaml.safe_load((path / CONFIG_FILE).read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path / CONFIG_FILE} is not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{path / CONFIG_FILE} does not hold a config mapping")
    try:
        table = pq.read_table(path / METRICS_FILE)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise ValueError(f"{path / METRICS_FILE} is not a readable parquet file: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path / METRICS_FILE} lacks the column(s) {', '.join(missing)}")
    rows = sorted(table.to_pylist(), key=lambda row: row["round"])
    return RunRecord(path=path, config=config, metrics=rows)


def load_runs(paths: str | Path | Iterable[str | Path]) -> list[RunRecord]:
    """Load run folders, or every run folder one level inside a parent (a compare or sweep).

    Subfolders that have a config but no metrics yet (not started, or crashed before the
    first round) are skipped with a warning so a sweep in progress can still be plotted.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    records: list[RunRecord] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir() or (path / CONFIG_FILE).is_file():
            records.append(load_run(path))
            continue
        children = sorted(p for p in path.iterdir() if p.is_dir())
        found = [p for p in children if is_run_folder(p)]
        for child in children:
            if (child / CONFIG_FILE).is_file() and child not in found:
                warnings.warn(f"skipping {child}: no {METRICS_FILE} yet", stacklevel=2)
        if not found:
            raise FileNotFoundError(
                f"{path} is neither a run folder nor a folder of run folders "
                f"(no {CONFIG_FILE} + {METRICS_FILE} in it or one level down)"
            )
        records.extend(load_run(p) for p in found)
    return records


def gib_to_target(record: RunRecord, target: float) -> float | None:
    """Cumulative GiB when test accuracy first reaches target (a fraction); None if never."""
    for row in record.metrics:
        acc = row.get("test_acc")
        if _is_number(acc) and acc >= target:
            return float(row["comm_gib_cum"])
    return None


def best_within_budget(record: RunRecord, gib: float) -> float | None:
    """Best test accuracy over rounds whose cumulative traffic fits the budget; None if none do.

    A run that stopped before spending the budget is judged on what it did spend.
    """
    accs = [
        float(row["test_acc"])
        for row in record.metrics
        if _is_number(row.get("test_acc")) and row["comm_gib_cum"] <= gib
    ]
    return max(accs) if accs else None
