"""Checkpoints and exact resume: a stopped run continues as if it had never stopped."""

from __future__ import annotations

import pytest
import torch
from run_helpers import assert_same_learning, run_small

from fslsage_ray.cli import main
from fslsage_ray.config import ConfigError
from fslsage_ray.outputs.checkpoint import CHECKPOINT_FILE, load_checkpoint
from fslsage_ray.simulation import Simulation

INPROC = ["runtime.backend=inprocess", "run.checkpoint_every=1"]


@pytest.mark.parametrize("method", ["fsl_sage", "cse_fsl", "sflv1", "fsl_an"])
def test_three_rounds_then_resume_equals_six_straight(tmp_path, method):
    name = f"algorithm.name={method}"
    straight = run_small(tmp_path / "straight", *INPROC, name, "run.rounds=6")
    run_small(tmp_path / "stopped", *INPROC, name, "run.rounds=3")
    resumed = Simulation.resume(tmp_path / "stopped", ["run.rounds=6"], progress=False).run()
    assert_same_learning(straight, resumed.to_pylist())


@pytest.mark.ray
def test_resume_on_ray_with_a_different_actor_count(tmp_path, ray_local):
    # The uninterrupted run in-process: it learns what it learns on Ray (test_determinism),
    # and the resumed run still starts on one actor and ends on three.
    straight = run_small(
        tmp_path / "straight", "runtime.backend=inprocess", "run.checkpoint_every=2", "run.rounds=4"
    )
    run_small(
        tmp_path / "stopped", "run.checkpoint_every=2", "run.rounds=2", "runtime.num_actors=1"
    )
    resumed = Simulation.resume(
        tmp_path / "stopped", ["run.rounds=4", "runtime.num_actors=3"], progress=False
    ).run()
    assert_same_learning(straight, resumed.to_pylist())


def test_cli_resume_continues_the_folder(tmp_path, capsys):
    run_small(tmp_path / "run", *INPROC, "run.rounds=2")
    assert main(["run", "--quiet", "--resume", str(tmp_path / "run"), "run.rounds=3"]) == 0
    assert "3 rounds" in capsys.readouterr().out


def test_checkpoint_loads_with_weights_only_and_holds_all_state(tmp_path):
    run_small(tmp_path / "run", *INPROC, "run.rounds=2")
    payload = torch.load(tmp_path / "run" / CHECKPOINT_FILE, weights_only=True)
    assert payload["round"] == 1
    assert set(payload["backend"]) == {"clients", "server"}
    client = payload["backend"]["clients"][0]
    assert {"model", "optimizer", "aux", "generator"} <= set(client)
    server = payload["backend"]["server"]
    assert {"model", "optimizer", "aux", "buffers"} <= set(server)
    assert len(payload["metrics"]) == 2


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path):
    run_small(tmp_path / "run", *INPROC, "run.rounds=2")
    # A crash mid-write leaves only the temporary file behind; the real one is untouched.
    (tmp_path / "run" / (CHECKPOINT_FILE + ".tmp")).write_bytes(b"half a checkpoint")
    assert load_checkpoint(tmp_path / "run")["round"] == 1


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["algorithm.upload_every=3"], "algorithm.upload_every"),
        (["run.seed=7"], "run.seed"),
        (["data.partition=dirichlet"], "data.partition"),
    ],
)
def test_a_checkpoint_from_a_different_config_is_refused(tmp_path, overrides, message):
    run_small(tmp_path / "run", *INPROC, "run.rounds=1")
    with pytest.raises(ConfigError, match=message):
        Simulation.resume(tmp_path / "run", overrides, progress=False)


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    run_small(
        tmp_path / "run", "runtime.backend=inprocess", "run.checkpoint_every=0", "run.rounds=1"
    )
    with pytest.raises(ConfigError, match="no checkpoint"):
        Simulation.resume(tmp_path / "run", progress=False)


def test_a_damaged_checkpoint_is_refused(tmp_path):
    run_small(tmp_path / "run", *INPROC, "run.rounds=1")
    (tmp_path / "run" / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot be read"):
        Simulation.resume(tmp_path / "run", progress=False)


def test_resume_with_simulated_time_reads_its_checkpoint_and_keeps_the_clock(tmp_path):
    # Rows go into the checkpoint, which loads with weights_only: a numpy scalar among the
    # sim_* columns once made a run with simulated time unable to resume.
    clock = [*INPROC, "system.profile=mobile"]
    straight = run_small(tmp_path / "straight", *clock, "run.rounds=4")
    run_small(tmp_path / "stopped", *clock, "run.rounds=2")
    resumed = Simulation.resume(tmp_path / "stopped", ["run.rounds=4"], progress=False).run()
    rows = resumed.to_pylist()
    assert_same_learning(straight, rows)
    assert [r["sim_time_s"] for r in rows] == [r["sim_time_s"] for r in straight]
