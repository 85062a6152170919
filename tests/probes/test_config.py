"""The probes section: off by default, bad settings refused in one line before any work,
results markers (a resumed run keeps them), and probes pluggable like algorithms."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fslsage_ray import registry
from fslsage_ray.config import ConfigError, load_config
from fslsage_ray.config.effects import Effect, results
from fslsage_ray.config.keys import effect_of
from fslsage_ray.config.load import config_to_dict


def _load(*overrides: str):
    return load_config(None, list(overrides))


def test_off_by_default_and_defaults_for_listed_probes():
    config = _load()
    assert not config.probes.enabled
    assert not config.probes.is_probe_round(0, 10)
    config = _load("probes.list=[dcor, exposure]", "probes.every=4", "run.rounds=10")
    assert config.probes.settings("dcor").max_positions == 2048
    assert config.probes.settings("exposure") is None  # it has no settings
    assert [t for t in range(10) if config.probes.is_probe_round(t, 10)] == [3, 7, 9]
    # written into config.yaml and read back the same
    again = load_config(None, [], saved=True)
    assert config_to_dict(again)["probes"]["list"] == []
    assert config_to_dict(config)["probes"]["dcor"] == {"max_positions": 2048}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["probes.list=[dcorr]"], "unknown probe 'dcorr'; did you mean 'dcor'?"),
        (["probes.lst=[dcor]"], "did you mean 'probes.list'?"),
        (["probes.list=[dcor]", "probes.dcr.x=1"], "did you mean 'probes.dcor'?"),
        (["probes.list=[dcor]", "probes.every=0"], "probes.every must be >= 1"),
        (["probes.list=[dcor]", "probes.set_size=2"], "probes.set_size must be >= 4"),
        (["probes.list=[dcor, dcor]"], "names a probe twice"),
        (["probes.every=3"], "no effect while probes.list is empty"),
        (["probes.list=[reconstruction]", "probes.reconstruction.method=x"], "must be one of"),
        (["probes.list=[stealing]", "probes.stealing.client=-1"], "must be >= 0"),
    ],
)
def test_bad_settings_are_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")) as exc:
        _load(*overrides)
    assert "\n" not in str(exc.value)


def test_probe_settings_are_results_settings():
    """Probes change what a run measures (its metrics table): a resumed run keeps them, so
    every probe column of one run means the same thing (checkpoint.py refuses a change)."""
    for key in ("probes.list", "probes.every", "probes.set_size", "probes.dcor.max_positions"):
        assert effect_of(key) is Effect.RESULTS, key


def test_inapplicable_probes_refused_at_start(tmp_path):
    from fslsage_ray.simulation import Simulation

    config = _load(
        "probes.list=[stealing]", "probes.stealing.client=99", "runtime.backend=inprocess"
    )
    with pytest.raises(ConfigError, match="probes.stealing.client=99 is not a client"):
        Simulation(config, run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "metrics.parquet").exists()


@dataclass(frozen=True)
class LoudnessSettings:
    volume: int = results(3)


def test_a_registered_probe_is_listed_with_its_own_settings():
    registry.register_probe(
        "loudness", "tests.probes.test_config:LoudnessSettings", settings=LoudnessSettings
    )
    try:
        config = _load("probes.list=[loudness]", "probes.loudness.volume=5")
        assert config.probes.settings("loudness") == LoudnessSettings(5)
        assert effect_of("probes.loudness.volume") is Effect.RESULTS
    finally:
        registry._PROBES.pop("loudness")
