"""What each setting does to a run: the one marker every config field carries.

A field is declared with `results(...)`, `budget(...)`, `layout(...)` or `display(...)`
instead of a bare default. The marker, not a hand-kept list, decides:
- `--resume`: a changed results key is refused (the run would not continue the same
  experiment); budget, layout and display keys may change.
- legends and tables (outputs/settings.py): results keys that differ between runs name them;
  layout keys only where nothing else tells two runs apart; budget and display keys never.
- trackers: every key is logged unless its marker says `logged=False` (a tracker's own
  address names a server, not a result).
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Callable
from typing import Any


class Effect(enum.Enum):
    RESULTS = "results"  # changes what the run learns or measures
    BUDGET = "budget"  # how far the run goes (rounds, GiB, minutes, stop rules)
    LAYOUT = "layout"  # where and how the work runs; never what it learns (determinism)
    DISPLAY = "display"  # names, folders, checkpoints and trackers: what is written, not learnt


EFFECT = "effect"
LOGGED = "logged"
_MISSING: Any = dataclasses.MISSING


def _marked(effect: Effect, default: Any, factory: Callable[[], Any] | None, logged: bool) -> Any:
    metadata = {EFFECT: effect, LOGGED: logged}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def results(default: Any = _MISSING, *, factory: Callable[[], Any] | None = None) -> Any:
    """A setting that changes what the run learns or measures."""
    return _marked(Effect.RESULTS, default, factory, True)


def budget(default: Any = _MISSING, *, factory: Callable[[], Any] | None = None) -> Any:
    """How long or how far the run goes: may change when a run is continued."""
    return _marked(Effect.BUDGET, default, factory, True)


def layout(default: Any = _MISSING, *, factory: Callable[[], Any] | None = None) -> Any:
    """Where and how the work is placed; results do not depend on it."""
    return _marked(Effect.LAYOUT, default, factory, True)


def display(
    default: Any = _MISSING, *, factory: Callable[[], Any] | None = None, logged: bool = True
) -> Any:
    """What is written or shown (names, folders, trackers), never what is learnt."""
    return _marked(Effect.DISPLAY, default, factory, logged)


def field_effect(field: dataclasses.Field) -> Effect | None:
    """The field's marker; None for a nested section (its own fields carry theirs)."""
    return field.metadata.get(EFFECT)


def field_logged(field: dataclasses.Field) -> bool:
    return field.metadata.get(LOGGED, True)


def unmarked_fields(cls: type) -> list[str]:
    """Fields of a settings dataclass without a marker (a test keeps this empty)."""
    hints = typing.get_type_hints(cls)
    return [
        f.name
        for f in dataclasses.fields(cls)
        if field_effect(f) is None and not dataclasses.is_dataclass(hints[f.name])
    ]
