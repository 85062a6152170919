"""The `probes` section: what a run measures about leakage beside accuracy, bytes and time.

Probes (fslsage_ray/probes) read a run's state and never change it, so every field here is a
`results` setting: it changes what the run *measures* (the columns of metrics.parquet), and
that is what the marker stands for. A resumed run must therefore keep them: cumulative
exposure counts from round 0, and the probe set and probe rounds of a run are one set and
one schedule, so every probe column of one run means the same thing. Their learning columns
do not depend on them (tests/probes/test_no_effect.py shows it bit for bit).

Each probe's own settings sit in a sub-section named by its registration (`probes.dcor`,
`probes.reconstruction`, ...; fslsage_ray.registry.register_probe), like an algorithm's.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, ClassVar

from fslsage_ray import registry
from fslsage_ray.config.effects import results
from fslsage_ray.config.errors import ConfigError
from fslsage_ray.config.owned import chosen_section, complete_sections


@dataclass(frozen=True)
class ProbesConfig:
    list: list[str] = results(factory=list)  # probes to run, any of dcor | stealing | exposure
    # | reconstruction | a registered probe; empty: none (the default)
    every: int = results(1)  # rounds between probe rounds; the last round is always one
    set_size: int = results(256)  # examples drawn once (seeded from run.seed) from the
    # clients' training data that the probes measure on
    sections: dict[str, Any] = results(factory=dict)  # each probe's own settings, by
    # sub-section (`probes: {list: [dcor], dcor: {...}}`); YAML holds them in place

    OWNER_KIND: ClassVar[str] = registry.PROBE

    def __post_init__(self) -> None:
        known = registry.probe_names()
        for name in self.list:
            if name not in known:
                close = difflib.get_close_matches(str(name), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known: {list(known)}"
                raise ConfigError(f"probes.list: unknown probe {name!r}{hint}")
        if len(set(self.list)) != len(self.list):
            raise ConfigError(f"probes.list names a probe twice: {self.list}")
        if self.every < 1:
            raise ConfigError(f"probes.every must be >= 1 (rounds), got {self.every}")
        if self.set_size < 4:
            # the bias-corrected distance correlation needs at least 4 examples
            raise ConfigError(f"probes.set_size must be >= 4, got {self.set_size}")
        sections = dict(self.sections)
        for name in self.list:  # every listed probe's settings exist: its defaults if not given
            sections = complete_sections(registry.PROBE, name, sections)
        object.__setattr__(self, "sections", sections)

    @property
    def enabled(self) -> bool:
        return bool(self.list)

    def settings(self, name: str) -> Any:
        """The settings of probe `name` (None: it has none)."""
        own = chosen_section(registry.PROBE, name)
        return self.sections.get(own) if own is not None else None

    def is_probe_round(self, t: int, rounds: int) -> bool:
        """Round t (from 0) is probed: every `every` rounds (t+1 divisible) and the last."""
        return self.enabled and ((t + 1) % self.every == 0 or t + 1 == rounds)
