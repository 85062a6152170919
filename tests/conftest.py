"""Shared fixtures: one private loopback Ray for the whole session, small configs."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Decoded arrays and file hashes go to a temporary folder, never the user's cache."""
    before = os.environ.get("FSLSAGE_RAY_CACHE")
    os.environ["FSLSAGE_RAY_CACHE"] = str(tmp_path_factory.mktemp("fslsage_cache"))
    yield Path(os.environ["FSLSAGE_RAY_CACHE"])
    if before is None:
        os.environ.pop("FSLSAGE_RAY_CACHE", None)
    else:
        os.environ["FSLSAGE_RAY_CACHE"] = before


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray (4 logical CPUs, loopback only), shared by every Ray test."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (see ../shared/data/README.md)")
    return SHARED_DATA


class RunCache:
    """The metric rows of small runs, each computed once per test session.

    Many tests compare a run on one layout or path (Ray actors, a resume, another order)
    with the same in-process reference; several tests need the same reference. A run is
    keyed by its whole resolved config, so two override lists that mean the same run share
    it, and any setting that differs (however small) makes a run of its own. Only a test's
    reference side goes through here: the side under test always runs, so no test compares
    a cached run with itself. Each caller gets its own copy of the rows.
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._rows: dict[str, list[dict]] = {}

    def __call__(self, overrides: Sequence[str]) -> list[dict]:
        from fslsage_ray.config import config_to_dict, load_config
        from fslsage_ray.simulation import Simulation

        config = load_config(None, list(overrides))
        key = json.dumps(config_to_dict(config), sort_keys=True, default=str)
        if key not in self._rows:
            run_dir = self._root / f"run{len(self._rows)}"
            sim = Simulation(config, run_dir=run_dir, progress=False)
            self._rows[key] = sim.run().to_pylist()
        return copy.deepcopy(self._rows[key])


@pytest.fixture(scope="session")
def run_cache(tmp_path_factory) -> RunCache:
    """`run_cache(overrides)`: a small run's rows, computed once per session."""
    return RunCache(tmp_path_factory.mktemp("cached_runs"))
