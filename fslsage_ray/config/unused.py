"""Settings that would have no effect in the chosen configuration are refused, never ignored.

Only what the user gave is checked (a key present in the file or an override, with a value
other than its default): the defaults, and a run folder's saved config, which holds every
key, load as before. The settings of an algorithm, model family or data source that the
config does not choose are not refused: one file serves every method of a comparison.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fslsage_ray.config.errors import ConfigError


def _given(raw: Mapping[str, Any], section: str, config_section: Any) -> list[str]:
    """Keys of `section` the user gave with a value other than the default."""
    given = raw.get(section)
    if not isinstance(given, Mapping):
        return []
    defaults = {f.name: f for f in dataclasses.fields(config_section)}
    out = []
    for key in given:
        field = defaults.get(key)
        if field is None or field.default is dataclasses.MISSING:
            continue
        if getattr(config_section, key) != field.default:
            out.append(key)
    return out


def _refuse(section: str, keys: list[str], why: str) -> None:
    if keys:
        names = ", ".join(f"{section}.{k}" for k in keys)
        verb = "has" if len(keys) == 1 else "have"
        raise ConfigError(f"{names} {verb} no effect {why}")


def refuse_unused(config: Any, raw: Mapping[str, Any]) -> None:
    """One line naming the settings the user gave that this configuration would ignore."""
    system = config.system
    if not system.enabled:
        keys = [k for k in _given(raw, "system", system) if k != "profile"]
        _refuse(
            "system",
            keys,
            "while system.profile=none (simulated time is off); set system.profile "
            "(datacenter | broadband | mobile) or drop them",
        )
    elif system.trace is not None and "trace" in _given(raw, "system", system):
        if not Path(system.trace).is_file():
            raise ConfigError(f"system.trace: no file {system.trace}")
    if not config.probes.enabled:
        keys = [k for k in _given(raw, "probes", config.probes) if k != "list"]
        _refuse("probes", keys, "while probes.list is empty (no probe runs); list the probes")
    optim = config.optim
    if optim.schedule == "constant":
        keys = [k for k in _given(raw, "optim", optim) if k in ("warmup_steps", "decay_rounds")]
        _refuse("optim", keys, "with optim.schedule=constant; set optim.schedule=linear")
    data = config.data
    given = _given(raw, "data", data)
    if data.partition != "dirichlet":
        _refuse("data", [k for k in given if k == "alpha"], "unless data.partition=dirichlet")
    if data.partition != "shards":
        _refuse(
            "data", [k for k in given if k == "shards_per_client"], "unless data.partition=shards"
        )
    run = config.run
    if run.tracker == "none":
        keys = [k for k in _given(raw, "run", run) if k in ("tracker_uri", "tracker_project")]
        _refuse("run", keys, "while run.tracker=none; name a tracker or drop them")
    if not run.generates:
        keys = [k for k in _given(raw, "run", run) if k in ("generate_limit", "generate_beam")]
        _refuse("run", keys, "while run.generate_every is off; set it (rounds) or drop them")
