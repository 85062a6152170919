"""jobs/runtime_env.yaml is a valid Ray runtime env that keeps uploads small and offline.

A missing exclude turns every submission into a multi-gigabyte upload of the virtualenv,
and a pip section would need internet on every node; both are cheap to check here.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from ray.runtime_env import RuntimeEnv

RUNTIME_ENV = Path(__file__).resolve().parents[2] / "jobs" / "runtime_env.yaml"


def _load() -> dict:
    return yaml.safe_load(RUNTIME_ENV.read_text())


def test_ray_accepts_it() -> None:
    env = RuntimeEnv(**_load())
    assert env.working_dir() == "."
    assert env.env_vars()["RAY_USAGE_STATS_ENABLED"] == "0"


def test_heavy_and_private_folders_are_excluded() -> None:
    excludes = {e.rstrip("/") for e in _load()["excludes"]}
    assert {".venv", "runs", ".git"} <= excludes


def test_installs_nothing() -> None:
    assert not {"pip", "conda", "uv"} & set(_load())


def test_env_var_values_are_strings() -> None:
    assert all(isinstance(v, str) for v in _load()["env_vars"].values())
