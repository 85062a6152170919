"""The probes of one run, as the round driver uses them.

Built once at the start (each listed probe from its registration and settings); a probe
that can never measure this method or task is refused then, in one line, and one whose
columns are NaN for this method ("n/a") is named in the log. Every round the ledger probes
count the round's messages; on a probe round the server probes measure on the server host
(Backend.inspect) and every probe's columns go into the round's row, with `probe_s`, the
seconds the probes took.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fslsage_ray import registry
from fslsage_ray.algorithms.base import Algorithm, Parts
from fslsage_ray.config import Config
from fslsage_ray.probes.base import Message, Probe, nan_columns
from fslsage_ray.probes.exposure import ExposureProbe
from fslsage_ray.probes.on_server import measure_on_server
from fslsage_ray.probes.probe_set import probe_set
from fslsage_ray.runtime.backend import Backend
from fslsage_ray.tasks.base import Arrays, Task

log = logging.getLogger("fslsage_ray")
EXPOSURE_FILE = "probes_exposure.csv"


def build_probes(config: Config, algorithm: Algorithm, task: Task) -> tuple[list[Probe], dict]:
    """The listed probes, each asked whether it applies: ProbeRefused (one line) for one
    that can never measure here; {name: why} for those whose columns will be NaN."""
    probes: list[Probe] = []
    not_applicable: dict[str, str] = {}
    for name in config.probes.list:
        entry = registry.entry(registry.PROBE, name)
        assert entry is not None  # the config refused unknown names
        probe = entry.resolve()(config.probes.settings(name), config, task)
        why = probe.not_applicable(algorithm)
        if why is not None:
            not_applicable[name] = why
        probes.append(probe)
    return probes, not_applicable


def check_probes(config: Config, algorithm: Algorithm, task: Task) -> None:
    """Refuse, before any worker starts, a listed probe that cannot measure this run."""
    build_probes(config, algorithm, task)


class ProbeRunner:
    """The run's probes; `folder` (None: no outputs) receives the per-client exposure table."""

    def __init__(
        self,
        config: Config,
        algorithm: Algorithm,
        task: Task,
        train: Arrays,
        parts: Sequence[np.ndarray],
        folder: Path | None = None,
    ) -> None:
        self.config = config
        self.probes, self.not_applicable = build_probes(config, algorithm, task)
        for name, why in self.not_applicable.items():
            log.info(
                "probes: %s is n/a for %s (%s): its columns are NaN", name, algorithm.name, why
            )
        self.on_server = [
            p for p in self.probes if p.on_server and p.name not in self.not_applicable
        ]
        self.probe_set = probe_set(train, parts, config.probes.set_size, config.run.seed)
        self.folder = folder
        for probe in self.probes:
            if isinstance(probe, ExposureProbe):
                probe.start([len(p) for p in parts])

    def observe(self, t: int, messages: Sequence[Message]) -> None:
        """Every round, before the messages go to the simulated clock: the ledger probes."""
        for probe in self.probes:
            if not probe.on_server:
                probe.observe(t, messages)

    def columns(self, t: int, backend: Backend, parts: Parts) -> dict[str, float]:
        """The probe columns of round t (none off a probe round)."""
        if not self.config.probes.is_probe_round(t, self.config.run.rounds):
            return {}
        t0 = time.perf_counter()
        out: dict[str, float] = {}
        for probe in self.probes:
            if probe.name in self.not_applicable:
                out.update(nan_columns(probe))
            elif not probe.on_server:
                out.update(probe.ledger_columns())
        if self.on_server:
            measured = backend.inspect(measure_on_server, parts, self.on_server, self.probe_set, t)
            out.update(measured)
        self._write_exposure()
        out["probe_s"] = time.perf_counter() - t0
        return out

    def _write_exposure(self) -> None:
        if self.folder is None:
            return
        for probe in self.probes:
            if isinstance(probe, ExposureProbe):
                table = probe.per_client()
                with open(self.folder / EXPOSURE_FILE, "w", newline="") as f:
                    writer = csv.writer(f)
                    writer.writerow(list(table))
                    writer.writerows(zip(*(v.tolist() for v in table.values()), strict=True))

    def state(self) -> dict[str, Any]:
        return {p.name: p.state() for p in self.probes if p.state()}

    def restore(self, state: Mapping[str, Any] | None) -> None:
        for probe in self.probes:
            if state and probe.name in state:
                probe.restore(state[probe.name])
            elif isinstance(probe, ExposureProbe):  # the start of the run
                probe.start(probe.sizes.tolist())
