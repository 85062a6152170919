"""Every setting says what it does to a run; the marker decides resume, legends and logging.
Settings that would have no effect are refused; old keys, run folders and checkpoints load."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from fslsage_ray import registry
from fslsage_ray.config import Config, ConfigError, config_to_dict, load_config
from fslsage_ray.config.effects import Effect, unmarked_fields
from fslsage_ray.config.keys import effect_of, is_logged, live_settings
from fslsage_ray.outputs.checkpoint import check_compatible, config_differences

REPO = Path(__file__).resolve().parents[2]
SMALL = [
    "algorithm.num_clients=3",
    "algorithm.batch_size=64",
    "alignment.every=2",
    "alignment.epochs=2",
    "data.train_subset=300",
    "data.test_subset=100",
    "runtime.backend=inprocess",
    "run.checkpoint_every=1",
    "run.rounds=1",
]


def _sections(cls: type) -> list[type]:
    hints = typing.get_type_hints(cls)
    nested = [
        hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])
    ]
    return [cls, *(c for n in nested for c in _sections(n))]


def test_every_field_of_every_section_and_owned_settings_carries_a_marker():
    owned = [
        entry.settings_class()
        for kind in (registry.ALGORITHM, registry.MODEL, registry.DATA)
        for entry in registry.settings_sections(kind).values()
    ]
    assert owned, "FSL-SAGE and GPT-2 register settings of their own"
    for cls in [*_sections(Config), *owned]:
        assert unmarked_fields(cls) == [], cls.__name__


def test_markers_name_what_a_setting_does():
    assert effect_of("run.max_minutes") is Effect.BUDGET
    assert effect_of("run.max_gib") is Effect.BUDGET
    assert effect_of("run.rounds") is Effect.BUDGET
    assert effect_of("runtime.num_actors") is Effect.LAYOUT
    assert effect_of("runtime.upload_order") is Effect.RESULTS
    assert effect_of("run.out_dir") is Effect.DISPLAY
    # owners' settings, by today's key and by the keys older files used
    assert effect_of("algorithm.alignment.every") is Effect.RESULTS
    assert effect_of("alignment.every") is Effect.RESULTS
    assert effect_of("algorithm.align_every") is Effect.RESULTS
    assert effect_of("model.gpt2.n_layer") is Effect.RESULTS
    assert effect_of("algorithm.no_such_thing") is Effect.RESULTS  # unknown: the cautious way
    assert not is_logged("run.tracker_uri") and is_logged("run.tracker")


def test_resume_accepts_budget_and_layout_and_refuses_results_in_one_line():
    saved = config_to_dict(load_config(None, SMALL))
    payload = {"config": saved}
    for accepted in (
        ["run.max_minutes=30"],
        ["run.max_gib=2.5"],
        ["run.rounds=9", "run.stop_at_accuracy=0.9"],
        ["runtime.backend=ray", "runtime.num_actors=2"],
        ["run.name=again", "run.checkpoint_every=3"],
    ):
        check_compatible(payload, load_config(None, [*SMALL, *accepted]))
    with pytest.raises(ConfigError) as refused:
        check_compatible(payload, load_config(None, [*SMALL, "runtime.upload_order=arrival"]))
    message = str(refused.value)
    assert "\n" not in message
    assert "runtime.upload_order: 'deterministic' -> 'arrival'" in message
    diffs = config_differences(saved, load_config(None, [*SMALL, "alignment.epochs=3"]))
    assert diffs == ["algorithm.alignment.epochs: 2 -> 3"]


def test_cli_resume_accepts_max_minutes_and_refuses_upload_order(tmp_path, capsys):
    from fslsage_ray.cli import main

    run = tmp_path / "run"
    assert main(["run", "--quiet", "--out", str(run), *SMALL]) == 0
    resumed = ["run", "--quiet", "--resume", str(run), "run.rounds=2", "run.max_minutes=30"]
    assert main(resumed) == 0
    assert "2 rounds" in capsys.readouterr().out
    assert main(["run", "--quiet", "--resume", str(run), "runtime.upload_order=arrival"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runtime.upload_order" in err[0], err


def test_an_old_run_folder_config_loads_and_resumes_as_the_same_run(tmp_path):
    """A config.yaml as runs wrote it before settings moved to their owners: the top-level
    alignment section, algorithm.align_every and a GPT-2 section beside a CNN."""
    old = config_to_dict(load_config(None, SMALL))
    old["alignment"] = old["algorithm"].pop("alignment")
    old["alignment"]["every"] = old["alignment"].pop("every")
    old["algorithm"]["align_every"] = old["alignment"].pop("every")
    old["model"]["gpt2"] = {"n_layer": 24, "n_embd": 1024}  # written for every model then
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old, sort_keys=False))
    config = load_config(path, saved=True)
    assert config.alignment.every == 2 and config.alignment.epochs == 2
    assert config.model.settings is None  # a CNN has none; the GPT-2 section is inert
    assert config_differences(old, config) == []
    assert config_differences(old, load_config(path, ["run.max_minutes=5"], saved=True)) == []


def test_every_run_folder_config_in_the_repository_loads_unchanged():
    folders = sorted(REPO.glob("**/results/**/config.yaml"))
    assert folders, "the repository keeps example run folders"
    for path in folders:
        raw = yaml.safe_load(path.read_text())
        config = load_config(path, saved=True)
        assert config_differences(raw, config) == [], path


@pytest.mark.parametrize(
    "path", sorted(REPO.glob("configs/**/*.yaml")) + [REPO / "fslsage_ray/presets/quickstart.yaml"]
)
def test_shipped_configs_set_nothing_without_effect(path):
    load_config(path)


def test_the_alignment_section_may_be_given_either_way():
    old = load_config(None, ["alignment.every=3", "algorithm.align_epochs=4"])
    new = load_config(None, ["algorithm.alignment.every=3", "algorithm.alignment.epochs=4"])
    assert old == new and new.alignment.every == 3
    assert config_to_dict(new)["algorithm"]["alignment"]["epochs"] == 4
    assert "alignment" not in config_to_dict(new)  # written where it lives now
    with pytest.raises(ConfigError, match="did you mean 'algorithm.alignment.every'"):
        load_config(None, ["algorithm.alignment.evry=3"])
    with pytest.raises(ConfigError, match="did you mean 'model.gpt2.n_layer'"):
        load_config(None, ["model.name=gpt2", "model.gpt2.n_layr=3"])


def test_a_comparison_config_may_carry_settings_of_methods_it_does_not_run():
    """One file serves every method of a comparison: FSL-SAGE's settings do not stop FedAvg,
    are not read by it, and do not tell its runs apart."""
    config = load_config(None, ["algorithm.name=fedavg", "alignment.every=3"])
    assert config.algorithm.settings is None
    flat = live_settings(config_to_dict(config))
    assert not any(k.startswith("algorithm.alignment.") for k in flat)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["system.trace=devices.csv"], ["system.trace", "system.profile=none"]),
        (["system.uplink_mbps=5", "system.availability=0.5"], ["system.uplink_mbps"]),
        (["system.profile=mobile", "system.trace=/no/such/trace.csv"], ["no file"]),
        (["optim.warmup_steps=10"], ["optim.warmup_steps", "optim.schedule=constant"]),
        (["data.alpha=0.3"], ["data.alpha", "data.partition=dirichlet"]),
        (["data.shards_per_client=3"], ["data.shards_per_client", "data.partition=shards"]),
        (["run.tracker_uri=http://host:5000"], ["run.tracker_uri", "run.tracker=none"]),
    ],
)
def test_a_setting_without_effect_is_refused_in_one_line(overrides, words):
    with pytest.raises(ConfigError) as refused:
        load_config(None, overrides)
    message = str(refused.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_settings_with_effect_or_at_their_defaults_pass(tmp_path):
    trace = tmp_path / "devices.csv"
    trace.write_text("client,uplink_mbps\n0,5\n")
    load_config(None, ["system.profile=mobile", f"system.trace={trace}"])
    load_config(None, ["optim.schedule=linear", "optim.warmup_steps=10"])
    load_config(None, ["data.partition=dirichlet", "data.alpha=0.3"])
    load_config(None, ["data.alpha=1.0", "system.trace=null"])  # the defaults, written out


def test_a_saved_run_folder_is_not_refused_for_what_it_holds(tmp_path):
    """A run made before these checks may hold a setting that had no effect; it still
    loads (the check applies to what is given now)."""
    old = config_to_dict(Config())
    old["system"]["trace"] = "gone.csv"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    assert load_config(path, saved=True).system.trace == "gone.csv"
    with pytest.raises(ConfigError, match="system.trace"):
        load_config(path)
    with pytest.raises(ConfigError, match="optim.warmup_steps"):
        load_config(path, ["optim.warmup_steps=3"], saved=True)


@dataclasses.dataclass(frozen=True)
class _Width:
    hidden: int = 16  # unmarked: counts as changing results

    def __post_init__(self):
        if self.hidden < 1:
            raise ConfigError("model.mlp.hidden must be >= 1")


def test_a_model_family_and_a_data_set_of_ones_own_carry_settings(monkeypatch):
    monkeypatch.setitem(registry._MODELS, "mlp", registry._entry("mlp", "x:Y", None, _Width))
    monkeypatch.setitem(
        registry._DATASETS,
        "iris",
        registry._entry("iris", "x:load", None, _Width, section="rows", accuracy_target=0.9),
    )
    config = load_config(None, ["model.name=mlp", "model.mlp.hidden=8", "data.name=iris"])
    assert config.model.settings == _Width(8)
    assert config.data.settings == _Width(16)  # the owner's defaults when none are given
    assert config_to_dict(config)["data"]["rows"] == {"hidden": 16}
    assert effect_of("model.mlp.hidden") is Effect.RESULTS
    assert registry.accuracy_target("iris") == 0.9
    with pytest.raises(ConfigError, match="model.mlp.hidden must be >= 1"):
        load_config(None, ["model.name=mlp", "model.mlp.hidden=0"])
    with pytest.raises(ConfigError, match="did you mean 'data.rows'"):
        load_config(None, ["data.name=iris", "data.row.hidden=3"])
