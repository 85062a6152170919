"""docs/extending.md's example, run exactly as written: a data set, a model family and an
algorithm registered from a user's module, used from a config by name."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fslsage_ray.config import ConfigError, load_config
from fslsage_ray.config.effects import Effect
from fslsage_ray.config.keys import effect_of
from fslsage_ray.experiment import planned_sizes
from fslsage_ray.plan import plan_rounds
from fslsage_ray.simulation import Simulation

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
SETTINGS = {
    "plugins": ["my_extension"],
    "data": {"name": "iris"},
    "model": {"name": "mlp"},
    "algorithm": {
        "name": "cse_fsl_every_batch",
        "num_clients": 3,
        "batch_size": 8,
        "cse_fsl_every_batch": {"server_lr_scale": 2.0},
    },
    "run": {"rounds": 12, "checkpoint_every": 0},
}


def _module_from_doc(folder: Path) -> Path:
    """The doc's last python block, as the user would save it."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "docs/extending.md has no python block"
    (folder / "my_extension.py").write_text(blocks[-1])
    return folder


def test_registered_family_dataset_and_algorithm_run_in_process(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_module_from_doc(tmp_path)))
    config_file = tmp_path / "iris.yaml"
    config_file.write_text(yaml.safe_dump(SETTINGS))
    config = load_config(config_file, ["runtime.backend=inprocess"])
    rows = Simulation(config, run_dir=tmp_path / "run", progress=False).run().to_pylist()
    assert rows[-1]["test_acc"] > 0.8  # chance is 1/3
    assert rows[0]["uploads"] == sum(-(-n // 8) for n in (40, 40, 40))  # every batch
    plan = plan_rounds(config, *planned_sizes(config), rounds=len(rows))
    assert [r["comm_bytes"] for r in rows] == [r["total"] for r in plan["rounds"]]


def test_the_plugin_algorithm_reads_its_own_settings_from_yaml_and_overrides(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_module_from_doc(tmp_path)))
    config_file = tmp_path / "iris.yaml"
    config_file.write_text(yaml.safe_dump(SETTINGS))
    key = "algorithm.cse_fsl_every_batch"
    config = load_config(config_file, [f"{key}.aux_lr_scale=0.5"])
    own = config.algorithm.settings
    assert (own.server_lr_scale, own.aux_lr_scale) == (2.0, 0.5)
    assert effect_of(f"{key}.aux_lr_scale") is Effect.RESULTS  # refused on --resume
    with pytest.raises(ConfigError, match=f"did you mean '{key}.aux_lr_scale'"):
        load_config(config_file, [f"{key}.aux_lr_scal=0.5"])
    with pytest.raises(ConfigError, match=f"{key}.server_lr_scale: expected float"):
        load_config(config_file, [f"{key}.server_lr_scale=fast"])
    with pytest.raises(ConfigError, match=f"{key}.aux_lr_scale must be > 0"):
        load_config(config_file, [f"{key}.aux_lr_scale=0"])
    # The settings reach the optimizers: a far slower server learns less in the same rounds.
    base = ["runtime.backend=inprocess", "run.rounds=3"]
    rows = {}
    for scale in (2.0, 0.001):
        tuned = load_config(config_file, [*base, f"{key}.server_lr_scale={scale}"])
        sim = Simulation(tuned, run_dir=tmp_path / f"run{scale}", progress=False)
        rows[scale] = sim.run().to_pylist()
    assert rows[2.0][-1]["train_loss"] != rows[0.001][-1]["train_loss"]
    saved = yaml.safe_load((tmp_path / "run2.0" / "config.yaml").read_text())
    assert saved["algorithm"]["cse_fsl_every_batch"] == {
        "server_lr_scale": 2.0,
        "aux_lr_scale": 1.0,
    }


@pytest.mark.ray
def test_the_plugin_reaches_ray_actors_through_the_command_line(tmp_path):
    folder = _module_from_doc(tmp_path)
    config_file = tmp_path / "iris.yaml"
    # One round on one client actor and a server actor of its own: two worker processes that
    # each import the plugin (the learning is test_registered_family_..._run_in_process's).
    settings = {**SETTINGS, "run": {"rounds": 1, "checkpoint_every": 0}}
    settings["runtime"] = {"num_actors": 1, "actor_num_cpus": 0.5, "server_num_cpus": 0.5}
    config_file.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "PYTHONPATH": str(folder)}
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fslsage_ray", "run", "--config", str(config_file)]
    done = subprocess.run(
        [*cmd, "--out", str(out), "--quiet"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ray:" in (out / "run.log").read_text()  # it ran on Ray actors, not in-process
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["plugins"] == ["my_extension"] and json.dumps(saved)
