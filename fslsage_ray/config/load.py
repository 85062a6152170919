"""YAML files and `a.b=value` overrides into a validated Config.

Nothing here executes code from a file: YAML is read with yaml.safe_load and every value is
checked against the dataclass field's declared type.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import types
import typing
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fslsage_ray.config.owned import settings_class
from fslsage_ray.config.schema import Config, ConfigError
from fslsage_ray.config.unused import refuse_unused
from fslsage_ray.registry import RegistryError, load_plugins

log = logging.getLogger("fslsage_ray")

# Keys that moved to a section of their own: old files and overrides keep working.
MOVED_KEYS = {
    ("algorithm", "align_every"): ("alignment", "every"),
    ("algorithm", "align_epochs"): ("alignment", "epochs"),
    ("algorithm", "align_batch_size"): ("alignment", "batch_size"),
    ("algorithm", "buffer_size"): ("alignment", "buffer_size"),
    ("algorithm", "lazy"): ("alignment", "lazy"),
}
# Sections that moved under their owner's section: the top-level `alignment` of older files,
# run folders and checkpoints is FSL-SAGE's own settings, now `algorithm.alignment`.
MOVED_SECTIONS = {"alignment": ("algorithm", "alignment")}
SECTIONS_FIELD = "sections"  # where a config section keeps its owners' settings (not a key)


def _type_name(tp: Any) -> str:
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _one_line(exc: Exception) -> str:
    """YAML errors span several lines; a CLI error should be one."""
    return " ".join(str(exc).split())


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check one value against a field type; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        names = " or ".join(_type_name(o) for o in options)
        raise ConfigError(f"{where}: expected {names}, got {value!r}")
    if origin is list:  # e.g. plugins: [module, ...]
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, (list, tuple)):
            return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:  # resource maps: {name: amount}
        key_tp, value_tp = typing.get_args(tp)
        if isinstance(value, Mapping):
            return {
                _coerce(k, key_tp, f"{where} key"): _coerce(v, value_tp, f"{where}.{k}")
                for k, v in value.items()
            }
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - schema uses only the types above
        raise ConfigError(f"{where}: unsupported field type {tp!r}")
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _unknown_key(key: str, known: Sequence[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        hint = f"; did you mean {where + close[0]!r}?"
    else:
        hint = f"; known keys in {where.rstrip('.') or 'the top level'}: {', '.join(known)}"
    return ConfigError(f"unknown config key {where + key!r}{hint}")


def _build(cls: type, raw: Mapping[str, Any], where: str = "") -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != SECTIONS_FIELD}
    kind = getattr(cls, "OWNER_KIND", None)
    kwargs: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for key, value in raw.items():
        owned = settings_class(kind, str(key)) if kind and key not in fields else None
        if owned is not None:  # an algorithm's, model family's or data source's own settings
            sections[key] = _build(owned, value if value is not None else {}, f"{where}{key}.")
            continue
        if key not in fields:
            raise _unknown_key(str(key), [*fields, *_section_names(kind)], where)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value if value is not None else {}, f"{where}{key}.")
        else:
            kwargs[key] = _coerce(value, tp, where + key)
    if sections:
        kwargs[SECTIONS_FIELD] = sections
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where.rstrip('.') or 'config'}: {exc}") from exc


def _section_names(kind: str | None) -> list[str]:
    from fslsage_ray.registry import settings_sections

    return list(settings_sections(kind)) if kind else []


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """`algorithm.upload_every=5 data.name=cifar10` -> nested dict (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like section.key=value")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: cannot parse value: {_one_line(exc)}") from exc
        _set_path(tree, key.strip(), value)
    return tree


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {_one_line(exc)}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return raw


def quickstart_path() -> Path:
    """The embedded offline default (`fslsage-ray run` with no --config): digits, 10 clients,
    FSL-SAGE, a small CNN, settings sized for a laptop."""
    return Path(str(resources.files("fslsage_ray") / "presets" / "quickstart.yaml"))


def move_old_keys(raw: Mapping[str, Any], say: bool = True) -> dict[str, Any]:
    """Old keys go to their new place (they win over the new key: they were given last);
    `say`: log each move (a config being loaded, not a run folder being read)."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
    for (section, key), (new_section, new_key) in MOVED_KEYS.items():
        old = out.get(section)
        if isinstance(old, dict) and key in old:
            value = old.pop(key)
            target = out.setdefault(new_section, {})
            if isinstance(target, dict):
                target[new_key] = value
            if say:
                log.info("config: %s.%s is now %s.%s", section, key, new_section, new_key)
    for old_section, (owner, section) in MOVED_SECTIONS.items():
        moved = out.pop(old_section, None)
        if moved is None:
            continue
        parent = out.get(owner)
        parent = dict(parent) if isinstance(parent, Mapping) else {}
        given = parent.get(section)
        if isinstance(given, Mapping) and isinstance(moved, Mapping):
            moved = {**given, **moved}
        parent[section] = moved
        out[owner] = parent
        if say:
            log.info("config: the %s section is now %s.%s", old_section, owner, section)
    return out


def config_from_dict(raw: Mapping[str, Any], saved: bool = False) -> Config:
    """A validated Config; the plugins it names are imported first (they may register the
    names the rest of it uses). A setting given that would have no effect is refused, except
    in a `saved` config (a run folder's or checkpoint's: it loads as it was made)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config: expected a mapping, got {raw!r}")
    plugins = _coerce(raw.get("plugins") or [], list[str], "plugins")
    try:
        load_plugins(plugins)
    except RegistryError as exc:
        raise ConfigError(str(exc)) from exc
    moved = move_old_keys(raw)
    config = _build(Config, moved)
    if not saved:
        refuse_unused(config, moved)
    return config


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), saved: bool = False
) -> Config:
    """The file (or, with None, the dataclass defaults: the authors' algorithm settings)
    with command-line overrides applied, validated. For the laptop-sized offline default,
    pass quickstart_path(). `saved`: the file is a run folder's config.yaml, loaded as it
    was made (only the overrides are checked for settings without effect)."""
    raw = move_old_keys(read_yaml(path)) if path is not None else {}
    extra = move_old_keys(parse_overrides(overrides))
    config = config_from_dict(_merge(raw, extra), saved=True)
    refuse_unused(config, extra if saved else _merge(raw, extra))
    return config


def _plain(value: Any) -> Any:
    """A config value as YAML writes it; a section's owners' settings sit in the section."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.name == SECTIONS_FIELD:
                out.update({k: _plain(v) for k, v in item.items()})
            else:
                out[f.name] = _plain(item)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def config_to_dict(config: Config) -> dict[str, Any]:
    return _plain(config)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"run": {"seed": 1}} -> {"run.seed": 1}: nested mappings as dotted keys."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
