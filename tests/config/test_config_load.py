"""Configs that should load: defaults, file + overrides, round trips, shipped YAMLs.

A config is the contract between a user's YAML and the simulator, so these pin down
precedence (command line beats file beats defaults) and that what we write back is loadable.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from fslsage_ray.config import (
    Config,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    parse_overrides,
)

REPO = Path(__file__).resolve().parents[2]
REPO_CONFIGS = sorted((REPO / "configs").glob("**/*.y*ml"))
PRESETS = sorted(
    Path(str(p))
    for p in (resources.files("fslsage_ray") / "presets").iterdir()
    if p.name.endswith((".yaml", ".yml"))
)


def _pick(config: Config, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def test_defaults_without_file_or_overrides() -> None:
    assert load_config() == Config()
    assert load_config(None, []) == config_from_dict({})


def test_empty_yaml_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing set\n")
    assert load_config(path) == Config()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["run.rounds=3"], {"run.rounds": 3}),
        (
            ["algorithm.upload_every=5", "data.name=cifar10"],
            {"algorithm.upload_every": 5, "data.name": "cifar10"},
        ),
        (["data.partition=dirichlet", "data.alpha=0.5"], {"data.alpha": 0.5}),
        (["data.partition=dirichlet", "data.alpha=2"], {"data.alpha": 2.0}),  # int for a float
        (["data.train_subset=null"], {"data.train_subset": None}),
        (["data.train_subset="], {"data.train_subset": None}),  # empty value means None
        (["runtime.address=127.0.0.1:6379"], {"runtime.address": "127.0.0.1:6379"}),
        (
            ["run.max_gib=1.5", "run.count_labels=true"],
            {"run.max_gib": 1.5, "run.count_labels": True},
        ),
        (["run.rounds=3", "run.rounds=4"], {"run.rounds": 4}),  # last one wins
    ],
)
def test_overrides_on_defaults(overrides: list[str], expected: dict[str, Any]) -> None:
    config = load_config(None, overrides)
    for key, value in expected.items():
        assert _pick(config, key) == value, key


def test_parse_overrides_builds_nested_tree() -> None:
    tree = parse_overrides(["a.b=1", "a.c=x", "d.e.f=[1, 2]", "g.h=true"])
    assert tree == {"a": {"b": 1, "c": "x"}, "d": {"e": {"f": [1, 2]}}, "g": {"h": True}}


FILE_YAML = """
data:
  partition: dirichlet
  alpha: 0.5
algorithm:
  num_clients: 4
  batch_size: 32
run:
  rounds: 7
  name: from-file
"""


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], {"algorithm.num_clients": 4, "algorithm.batch_size": 32, "run.rounds": 7}),
        # The override wins; siblings from the file survive the nested merge.
        (
            ["algorithm.num_clients=6"],
            {"algorithm.num_clients": 6, "algorithm.batch_size": 32, "run.name": "from-file"},
        ),
        (["data.alpha=0.1"], {"data.alpha": 0.1, "data.partition": "dirichlet"}),
        # A section the file does not mention gets the override on top of defaults.
        (["optim.lr=0.01"], {"optim.lr": 0.01, "optim.beta1": 0.9, "run.rounds": 7}),
        # Keys set nowhere keep their defaults.
        ([], {"algorithm.upload_every": 5, "model.name": "cnn"}),
    ],
)
def test_file_then_overrides(tmp_path: Path, overrides: list[str], expected: dict) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(FILE_YAML)
    config = load_config(path, overrides)
    for key, value in expected.items():
        assert _pick(config, key) == value, key


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        [
            "data.name=parquet",
            "data.train_path=/a.parquet",
            "data.test_path=/b.parquet",
            "data.num_classes=3",
            "data.augment=false",
        ],
        ["runtime.address=127.0.0.1:6379", "runtime.num_actors=2", "run.max_gib=0.25"],
        ["data.partition=shards", "data.shards_per_client=3", "algorithm.lazy=true"],
    ],
)
def test_resolved_config_round_trips(overrides: list[str]) -> None:
    config = load_config(None, overrides)
    again = config_from_dict(yaml.safe_load(dump_config(config)))
    assert again == config
    assert config_to_dict(again) == config_to_dict(config)


@pytest.mark.parametrize("path", PRESETS + REPO_CONFIGS, ids=lambda p: p.name)
def test_shipped_yaml_loads_and_round_trips(path: Path) -> None:
    config = load_config(path)
    assert config_from_dict(yaml.safe_load(dump_config(config))) == config


def test_quickstart_preset_is_packaged() -> None:
    names = [p.name for p in PRESETS]
    assert "quickstart.yaml" in names
    config = load_config(PRESETS[names.index("quickstart.yaml")])
    assert config.data.name == "digits"
    assert config.algorithm.num_clients == 10


def test_keys_that_moved_to_the_alignment_section_still_load(tmp_path):
    """Files written before the alignment section (algorithm.align_every, ...) mean the same."""
    old = tmp_path / "old.yaml"
    old.write_text(
        "algorithm:\n  align_every: 3\n  align_epochs: 7\n  align_batch_size: 64\n"
        "  buffer_size: 128\n  lazy: true\n"
    )
    new = tmp_path / "new.yaml"
    new.write_text(
        "alignment:\n  every: 3\n  epochs: 7\n  batch_size: 64\n  buffer_size: 128\n  lazy: true\n"
    )
    assert load_config(old) == load_config(new)
    assert load_config(None, ["algorithm.align_every=4"]).alignment.every == 4
