"""Which settings tell runs apart, and runs grouped over seeds.

A sweep (`--sweep algorithm.num_clients=10,50`) or a scaling study changes one setting
between runs; a reader of its table or figure must see which row is which value
(`num_clients = 50`), so the settings that differ are found from the runs' own configs, and
`plot` can say the same of folders it did not make. Runs that differ only in `run.seed` are
repeats of one setting: tables and figures show their mean and spread.

Torch-free, like the rest of outputs/ that reads run folders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import mean, stdev
from typing import Any

from fslsage_ray.config.effects import Effect
from fslsage_ray.config.keys import effect_of, live_settings
from fslsage_ray.outputs.runs import RunRecord

# Keys that another label already shows: the method (method_label), the client split
# (partition_label) and the seed (runs over seeds are repeats of one setting).
SHOWN_ELSEWHERE = (
    "algorithm.name",
    "algorithm.server_order",
    "algorithm.alignment.lazy",
    "data.partition",
    "data.alpha",
    "run.seed",
)
# Which settings can tell runs apart, by their marker (config/effects.py): what changes
# results, and the layout (only where nothing else does); never the budget or the display.
NAMING_EFFECTS = (Effect.RESULTS, Effect.LAYOUT)


def _flat(config: dict[str, Any]) -> dict[str, str]:
    """Dotted key -> the value as text (lists and mappings compared by their repr), for the
    settings that may name a run (in today's layout, whichever version wrote the folder)."""
    return {
        key: repr(value)
        for key, value in live_settings(config).items()
        if key not in SHOWN_ELSEWHERE and effect_of(key) in NAMING_EFFECTS
    }


def _differs(flats: Sequence[dict[str, str]], key: str) -> bool:
    """Compared among the runs that have the key: a run whose algorithm, model or data set
    has no such setting, or an older folder without it, does not make it vary."""
    return len({flat[key] for flat in flats if key in flat}) > 1


def varying_keys(records: Sequence[RunRecord]) -> list[str]:
    """Dotted keys whose value is not the same in every run (in config order). Layout keys
    count only where they are what tells two runs of one method, split, seed and setting
    apart (a sweep of runtime.num_actors): runs of different methods made on different
    layouts are labelled by what they learn from, not by where they ran."""
    flats = [_flat(r.config) for r in records]
    keys = list(dict.fromkeys(k for flat in flats for k in flat))
    varying = [k for k in keys if _differs(flats, k)]
    learning = [k for k in varying if effect_of(k) is not Effect.LAYOUT]
    identities = [
        (r.method_label, r.partition_label, seed_of(r), *(flat.get(k) for k in learning))
        for r, flat in zip(records, flats, strict=True)
    ]
    return varying if len(set(identities)) < len(identities) else learning


def setting_value(record: RunRecord, key: str) -> Any:
    return live_settings(record.config).get(key)


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting_label(record: RunRecord, keys: Sequence[str]) -> str:
    """`num_clients = 50` (the key's last part, which is what a reader knows it by)."""
    return ", ".join(f"{k.split('.')[-1]} = {_fmt(setting_value(record, k))}" for k in keys)


def seed_of(record: RunRecord) -> int | None:
    run = record.config.get("run")
    seed = run.get("seed") if isinstance(run, dict) else None
    return int(seed) if seed is not None else None


@dataclass(frozen=True)
class Group:
    """Runs of one method, split and setting: repeats over seeds (often just one run). A run
    that is no repeat of another yet looks the same keeps a group of its own, tagged with
    its run name."""

    method: str
    split: str
    setting: str
    records: tuple[RunRecord, ...]
    tag: str = ""

    @property
    def seeds(self) -> list[int | None]:
        return [seed_of(r) for r in self.records]


def group_runs(records: Sequence[RunRecord]) -> list[Group]:
    """Groups in first-seen order; a group holds more than one run only when its runs differ
    in seed alone (two runs of one seed stay apart, tagged: they are not repeats)."""
    keys = varying_keys(records)
    found: dict[tuple[str, str, str], list[RunRecord]] = {}
    for record in records:
        key = (record.method_label, record.partition_label, setting_label(record, keys))
        found.setdefault(key, []).append(record)
    groups = []
    for key, runs in found.items():
        seeds = [seed_of(r) for r in runs]
        if len(set(seeds)) == len(seeds):
            groups.append(Group(*key, tuple(runs)))
        else:
            groups.extend(Group(*key, (r,), tag=r.name) for r in runs)
    return groups


def mean_spread(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the measured values (spread 0 for one value;
    None when nothing was measured)."""
    numbers = [float(v) for v in values if v is not None]
    if not numbers:
        return None, None
    return mean(numbers), stdev(numbers) if len(numbers) > 1 else 0.0


__all__ = [
    "Group",
    "group_runs",
    "mean_spread",
    "seed_of",
    "setting_label",
    "setting_value",
    "varying_keys",
]
