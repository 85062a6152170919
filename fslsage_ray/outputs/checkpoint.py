"""Checkpoints: everything needed to continue a run exactly, written atomically.

Participants' states (every client's, and the server's per-client entries) are in a states
file beside it that the checkpoint names (runtime/state_file.py), written and read a chunk at
a time; the checkpoint itself stays small. Both hold only tensors, numbers, strings and
containers and are read back with torch.load(weights_only=True), so loading a checkpoint
cannot execute code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fslsage_ray.config import Config, ConfigError, config_from_dict, config_to_dict
from fslsage_ray.config.effects import Effect
from fslsage_ray.config.keys import effect_of, live_settings
from fslsage_ray.runtime.state_file import StatesFileError, StatesReader

CHECKPOINT_FILE = "checkpoint.pt"
# 2: one initial AM for every FSL-SAGE client; CSE-FSL/FSL-AN AMs' own Adam.
# 3: participants' states in a states file next to the checkpoint (runtime/state_file.py).
FORMAT = 3
READABLE = (2, 3)  # format 2 kept every state inline; it continues exactly all the same


def save_atomically(path: Path, payload: dict[str, Any]) -> Path:
    """Write to a temporary file, then rename: a crash mid-write keeps the previous file."""
    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def save_checkpoint(run_dir: Path, payload: dict[str, Any]) -> Path:
    return save_atomically(Path(run_dir) / CHECKPOINT_FILE, {"format": FORMAT, **payload})


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
    if payload["format"] not in READABLE:
        raise ConfigError(
            f"checkpoint {path} has format {payload['format']}, this fslsage-ray reads formats "
            f"{READABLE[0]}-{READABLE[-1]} (since format 2 every FSL-SAGE client starts from one "
            "AM and CSE-FSL/FSL-AN AMs have their own Adam), so it cannot continue that run "
            "exactly; start a new run"
        )
    states = payload.get("backend", {}).get("states")
    if states is not None:
        try:
            StatesReader(path.parent, states)
        except StatesFileError as exc:
            raise ConfigError(f"checkpoint {path} cannot be continued: {exc}") from None
    return payload


def states_file_of(payload: dict[str, Any]) -> str | None:
    """The states file a checkpoint names (None: format 2, or saved before round 0)."""
    states = payload.get("backend", {}).get("states")
    return None if states is None else states["file"]


def config_differences(saved: dict[str, Any], config: Config) -> list[str]:
    """Settings marked as changing results (config/effects.py) where the checkpoint and the
    config disagree; budget, layout and display settings may change on a resume."""
    try:  # in today's layout, as it was made (keys that moved since, owners' defaults)
        saved = config_to_dict(config_from_dict(saved, saved=True))
    except ConfigError:
        pass  # compared as written; every difference is reported
    old, new = live_settings(saved), live_settings(config_to_dict(config))
    keys = sorted(set(old) | set(new))
    return [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in keys
        if old.get(k) != new.get(k) and effect_of(k) is Effect.RESULTS
    ]


def check_compatible(payload: dict[str, Any], config: Config) -> None:
    diffs = config_differences(payload["config"], config)
    if diffs:
        raise ConfigError(
            "the checkpoint was made with a different config; resuming would not continue the "
            "same run (only budget, layout and display settings such as run.rounds, "
            "run.max_minutes or runtime.num_actors may change). Differences: " + "; ".join(diffs)
        )
