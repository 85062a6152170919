"""Finished (or running) run folders read back for comparison: config, metrics, and the
two questions the paper asks of them, GiB to reach a target and the best result within a GiB
budget, both in the run's headline metric (accuracy, or loss for a language model).

Torch-free: labels come from the registry's names, the headline from the metrics file.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from fslsage_ray import registry
from fslsage_ray.outputs.headline import HeadlineMetric, headline_from_metadata, is_number
from fslsage_ray.outputs.run_dir import CONFIG_FILE, METRICS_FILE

# Columns every comparison needs besides the headline; a metrics table without them is not
# from this simulator.
REQUIRED_COLUMNS = ("round", "comm_gib_cum")


@dataclass(frozen=True)
class RunRecord:
    """One run folder in memory; metrics are plain row dicts sorted by round; the headline
    (a column) and its goal ("max" or "min") say which number judges the run.
    """

    path: Path
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    headline: str = "test_acc"
    goal: str = "max"

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
        # algorithm.alignment.lazy; older run folders held alignment.lazy or algorithm.lazy
        algorithm = self._section("algorithm")
        own = algorithm.get("alignment")
        old = self._section("alignment").get("lazy", algorithm.get("lazy", False))
        return bool(own.get("lazy", old) if isinstance(own, dict) else old)

    @property
    def method_label(self) -> str:
        """The name a reader of the paper knows; lazy FSL-SAGE is a method of its own, and
        the authors' client-major server order is said where it was used."""
        label = registry.method_label(self.method, self.lazy)
        if self._section("algorithm").get("server_order") == "client_major":
            label += ", client-major"
        return label

    @property
    def dataset(self) -> str:
        return str(self._section("data").get("name", "unknown"))

    @property
    def dataset_label(self) -> str:
        return registry.dataset_label(self.dataset)

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

    @property
    def headline_metric(self) -> HeadlineMetric:
        return HeadlineMetric(self.headline, self.goal)

    @property
    def final_headline(self) -> float | None:
        """The headline at the last round that measured it."""
        measured = [float(v) for v in self.column(self.headline) if is_number(v)]
        return measured[-1] if measured else None

    @property
    def best_headline(self) -> float | None:
        """The best headline over all rounds (highest accuracy, lowest loss)."""
        return self.headline_metric.best(self.column(self.headline))


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
    try:
        headline = headline_from_metadata(table.schema.metadata, table.column_names)
    except ValueError as exc:
        raise ValueError(f"{path / METRICS_FILE}: {exc}") from exc
    required = (*REQUIRED_COLUMNS, headline.column)
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise ValueError(f"{path / METRICS_FILE} lacks the column(s) {', '.join(missing)}")
    rows = sorted(table.to_pylist(), key=lambda row: row["round"])
    return RunRecord(path, config, rows, headline=headline.column, goal=headline.goal)


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


def _some(names: Sequence[str], shown: int = 3) -> str:
    """A few names, so that an error about a large sweep stays one readable line."""
    more = f", ... ({len(names)} runs)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def common_headline(records: Sequence[RunRecord]) -> HeadlineMetric:
    """The headline all runs share; runs judged by different metrics cannot share a figure
    or a table (accuracy and loss have no common axis, nor a common "better").
    """
    kinds: dict[HeadlineMetric, list[str]] = {}
    for record in records:
        kinds.setdefault(record.headline_metric, []).append(record.name)
    if len(kinds) > 1:
        found = "; ".join(f"{m.column}: {_some(names)}" for m, names in kinds.items())
        raise ValueError(
            f"runs with different headline metrics cannot be compared together ({found}); "
            "plot or compare each kind separately"
        )
    return next(iter(kinds), HeadlineMetric())


def first_crossing(
    record: RunRecord, metric: HeadlineMetric, target: float, x: str = "comm_gib_cum"
) -> tuple[float, float] | None:
    """(x, value) at the first round whose metric meets the target; None if none. x is
    cumulative GiB, or simulated seconds (sim_time_s)."""
    for row in record.metrics:
        value = row.get(metric.column)
        if metric.reaches(value, target):
            return float(row[x]), float(value)
    return None


def has_sim_time(record: RunRecord) -> bool:
    """Whether every round carries simulated time (a run with `system`, or a replay)."""
    return bool(record.metrics) and all("sim_time_s" in row for row in record.metrics)


def time_to_target(record: RunRecord, target: float) -> float | None:
    """Simulated seconds when the headline first meets the target; None if never."""
    crossing = first_crossing(record, record.headline_metric, target, "sim_time_s")
    return None if crossing is None else crossing[0]


def gib_to_target(record: RunRecord, target: float) -> float | None:
    """Cumulative GiB when the headline first meets target (accuracy at or above it, a
    fraction; loss at or below it); None if never.
    """
    crossing = first_crossing(record, record.headline_metric, target)
    return None if crossing is None else crossing[0]


def best_within_budget(record: RunRecord, gib: float) -> float | None:
    """Best headline (highest accuracy, lowest loss) over rounds whose cumulative traffic fits
    the budget; None if none do.

    A run that stopped before spending the budget is judged on what it did spend.
    """
    values = [row.get(record.headline) for row in record.metrics if row["comm_gib_cum"] <= gib]
    return record.headline_metric.best(values)
