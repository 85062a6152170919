"""Checkpoints: everything needed to continue a run exactly, written atomically.

The file holds only tensors, numbers, strings and containers and is read back with
torch.load(weights_only=True), so loading a checkpoint cannot execute code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fslsage_ray.config import Config, ConfigError, config_from_dict, config_to_dict, flatten

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = 2  # 2: one initial AM for every FSL-SAGE client; CSE-FSL/FSL-AN AMs' own Adam

# Settings that may differ between a checkpoint and its resumption: how long to run, and
# where and how the work is placed (results do not depend on layout in deterministic mode).
RESUMABLE_CHANGES = {
    "run.rounds",
    "run.max_gib",
    "run.checkpoint_every",
    "run.out_dir",
    "run.tracker",
    "run.tracker_uri",
    "run.tracker_project",
    "run.callbacks",  # they watch and add columns; learning does not depend on them
}
RESUMABLE_SECTIONS = {"runtime"}


def save_checkpoint(run_dir: Path, payload: dict[str, Any]) -> Path:
    """Write to a temporary file, then rename: a crash mid-write keeps the previous one."""
    path = Path(run_dir) / CHECKPOINT_FILE
    tmp = path.with_suffix(".pt.tmp")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise ConfigError(f"no checkpoint in {run_dir}: nothing to resume (expected {path.name})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged files
        raise ConfigError(f"checkpoint {path} cannot be read: {exc}") from exc
    if not isinstance(payload, dict) or "format" not in payload:
        raise ConfigError(f"checkpoint {path} is not a fslsage-ray checkpoint (format {FORMAT})")
    if payload["format"] != FORMAT:
        raise ConfigError(
            f"checkpoint {path} has format {payload['format']}, this fslsage-ray writes format "
            f"{FORMAT} (since format 2 every FSL-SAGE client starts from one AM and CSE-FSL/"
            "FSL-AN AMs have their own Adam), so it cannot continue that run exactly; start a "
            "new run"
        )
    return payload


def config_differences(saved: dict[str, Any], config: Config) -> list[str]:
    """Settings that would change results, where the checkpoint and config disagree."""
    try:  # in today's layout (keys that moved since the checkpoint was written)
        saved = config_to_dict(config_from_dict(saved))
    except ConfigError:
        pass  # compared as written; every difference is reported
    old, new = flatten(saved), flatten(config_to_dict(config))
    keys = sorted(set(old) | set(new))
    return [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in keys
        if old.get(k) != new.get(k)
        and k not in RESUMABLE_CHANGES
        and k.split(".")[0] not in RESUMABLE_SECTIONS
    ]


def check_compatible(payload: dict[str, Any], config: Config) -> None:
    diffs = config_differences(payload["config"], config)
    if diffs:
        raise ConfigError(
            "the checkpoint was made with a different config; resuming would not continue the "
            "same run. Differences: " + "; ".join(diffs)
        )
