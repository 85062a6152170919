"""Settings owned by an algorithm, model family or data source: sub-sections of their section.

`algorithm: {name: fsl_sage, alignment: {...}}` holds FSL-SAGE's own settings in the
sub-section its registration names (fslsage_ray.registry). A config may carry the settings
of owners it does not choose (one file serves every method of a comparison); those are
validated like the rest and kept, and only the chosen owner's are read. The chosen owner's
always exist: its defaults when the config gives none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fslsage_ray import registry
from fslsage_ray.config.errors import ConfigError


def settings_class(kind: str, section: str) -> type | None:
    """The frozen dataclass registered for `kind.section` (None: no owner has it)."""
    found = registry.settings_sections(kind).get(section)
    return found.settings_class() if found is not None else None


def chosen_section(kind: str, name: str) -> str | None:
    found = registry.entry(kind, name)
    return found.section if found is not None else None


def complete_sections(kind: str, name: str, sections: Mapping[str, Any]) -> dict[str, Any]:
    """The given sections, each checked against its owner's class, plus the chosen owner's
    defaults where the config gives none."""
    out = dict(sections)
    for section, value in out.items():
        cls = settings_class(kind, section)
        if cls is None:
            raise ConfigError(f"unknown config key '{kind}.{section}': no {kind} owns it")
        if not isinstance(value, cls):
            raise ConfigError(f"{kind}.{section} must be a {cls.__name__}, got {value!r}")
    own = chosen_section(kind, name)
    if own is not None and own not in out:
        cls = settings_class(kind, own)
        assert cls is not None  # registered together with the section
        out[own] = cls()
    return out


def chosen_settings(kind: str, name: str, sections: Mapping[str, Any]) -> Any:
    """The chosen owner's settings (None: it has none)."""
    own = chosen_section(kind, name)
    return sections.get(own) if own is not None else None
