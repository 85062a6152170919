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

from fslsage_ray.config import load_config
from fslsage_ray.experiment import planned_sizes
from fslsage_ray.plan import plan_rounds
from fslsage_ray.simulation import Simulation

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
SETTINGS = {
    "plugins": ["my_extension"],
    "data": {"name": "iris"},
    "model": {"name": "mlp"},
    "algorithm": {"name": "cse_fsl_every_batch", "num_clients": 3, "batch_size": 8},
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


@pytest.mark.ray
def test_the_plugin_reaches_ray_actors_through_the_command_line(tmp_path):
    folder = _module_from_doc(tmp_path)
    config_file = tmp_path / "iris.yaml"
    settings = {**SETTINGS, "run": {"rounds": 3, "checkpoint_every": 0}}
    settings["runtime"] = {"num_actors": 2, "actor_num_cpus": 0.5, "server_num_cpus": 0.5}
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
