"""What a dotted config key (`runtime.upload_order`) does, read from its field's marker.

Run folders and checkpoints are read as plain mappings, sometimes written by older versions:
a key is first put where it lives today (config/load.py's moved keys), then looked up in the
schema, descending into the settings an algorithm, model family or data source registers.
Torch-free: legends and trackers read run folders where torch may not be installed.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from fslsage_ray.config.effects import Effect, field_effect, field_logged
from fslsage_ray.config.load import (
    MOVED_KEYS,
    MOVED_SECTIONS,
    SECTIONS_FIELD,
    flatten,
    move_old_keys,
)
from fslsage_ray.config.owned import chosen_section, settings_class
from fslsage_ray.config.schema import Config


def current_key(key: str) -> str:
    """The key where it lives today (`alignment.every` -> `algorithm.alignment.every`)."""
    parts = key.split(".")
    if len(parts) == 2 and tuple(parts) in MOVED_KEYS:
        parts = list(MOVED_KEYS[(parts[0], parts[1])])
    if parts[0] in MOVED_SECTIONS:
        parts = [*MOVED_SECTIONS[parts[0]], *parts[1:]]
    return ".".join(parts)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _field(key: str) -> dataclasses.Field | None:
    cls: Any = Config
    parts = current_key(key).split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != SECTIONS_FIELD}
        kind = getattr(cls, "OWNER_KIND", None)
        if part in fields:
            tp = _hints(cls)[part]
            if dataclasses.is_dataclass(tp):
                cls = tp
                continue
            return fields[part] if i == len(parts) - 1 else None
        owned = settings_class(kind, part) if kind else None
        if owned is None:
            return None
        cls = owned
    return None


def effect_of(key: str) -> Effect:
    """The key's marker; a key no schema knows (a plug-in not loaded here, a setting since
    removed) counts as changing results, the cautious reading."""
    field = _field(key)
    effect = field_effect(field) if field is not None else None
    return effect or Effect.RESULTS


def is_logged(key: str) -> bool:
    field = _field(key)
    return field_logged(field) if field is not None else True


def inert_prefixes(config: Mapping[str, Any]) -> tuple[str, ...]:
    """`algorithm.alignment.` where the config carries FSL-SAGE's settings but runs another
    algorithm: settings of owners it does not choose, which nothing reads."""
    out = []
    for kind in ("algorithm", "model", "data"):
        section = config.get(kind)
        if not isinstance(section, Mapping):
            continue
        own = chosen_section(kind, str(section.get("name")))
        for key, value in section.items():
            if isinstance(value, Mapping) and key != own and settings_class(kind, key):
                out.append(f"{kind}.{key}.")
    return tuple(out)


def live_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config (current or as an older version wrote it) as flat current keys, without
    the settings nothing reads."""
    config = move_old_keys(config, say=False)
    flat = flatten(config)
    inert = inert_prefixes(config)
    return {k: v for k, v in flat.items() if not k.startswith(inert)} if inert else flat


def keys_with(effects: Iterable[Effect], keys: Iterable[str]) -> list[str]:
    wanted = set(effects)
    return [k for k in keys if effect_of(k) in wanted]
