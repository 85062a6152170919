"""Shared fixtures: one private loopback Ray for the whole session, small configs."""

from __future__ import annotations

import os
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
