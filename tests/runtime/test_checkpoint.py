"""Checkpoints and exact resume: a stopped run continues as if it had never stopped."""

from __future__ import annotations

import pytest
import torch
from run_helpers import assert_same_learning, run_small

from fslsage_ray.cli import main
from fslsage_ray.config import ConfigError
from fslsage_ray.outputs.checkpoint import CHECKPOINT_FILE, load_checkpoint
from fslsage_ray.runtime.state_file import StatesReader
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
    assert set(payload["backend"]) == {"server", "states"}
    assert {"model", "optimizer"} <= set(payload["backend"]["server"])  # the shared part
    # Every participant's state is a record of the states file the checkpoint names, each
    # read back with weights_only (StatesReader); the file of an earlier round is gone.
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint_states-*")) == [
        "checkpoint_states-r1.bin"
    ]
    states = StatesReader(tmp_path / "run", payload["backend"]["states"])
    clients = dict(states.items("clients"))
    assert len(clients) >= 2 and set(clients) <= set(range(5))  # those that ever ran
    assert all({"model", "optimizer", "aux", "generator"} <= set(c) for c in clients.values())
    entries = dict(states.items("server"))  # FSL-SAGE's per-client AM and alignment buffer
    assert entries.keys() == clients.keys()
    assert all(set(e) == {"aux", "buffer"} for e in entries.values())
    assert len(payload["metrics"]) == 2


def test_a_missing_states_file_is_refused_before_any_work(tmp_path):
    run_small(tmp_path / "run", *INPROC, "run.rounds=1")
    (tmp_path / "run" / "checkpoint_states-r0.bin").unlink()
    with pytest.raises(ConfigError, match="checkpoint_states-r0.bin are missing"):
        Simulation.resume(tmp_path / "run", ["run.rounds=2"], progress=False)


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


def test_a_format_2_checkpoint_with_every_state_inline_still_resumes_exactly(tmp_path):
    """Checkpoints written before the states file (format 2) held every state inline."""
    straight = run_small(tmp_path / "straight", *INPROC, "run.rounds=3")
    run_small(tmp_path / "run", *INPROC, "run.rounds=2")
    path = tmp_path / "run" / CHECKPOINT_FILE
    payload = torch.load(path, weights_only=True)
    states = StatesReader(tmp_path / "run", payload["backend"]["states"])
    entries = dict(states.items("server"))
    payload["format"] = 2
    payload["backend"] = {
        "clients": dict(states.items("clients")),
        "server": {  # FSL-SAGE's server snapshot as format 2 laid it out
            **payload["backend"]["server"],
            "aux": {c: e["aux"] for c, e in entries.items()},
            "buffers": {c: e["buffer"] for c, e in entries.items()},
        },
    }
    torch.save(payload, path)
    states.path.unlink()
    resumed = Simulation.resume(tmp_path / "run", ["run.rounds=3"], progress=False).run()
    assert_same_learning(straight, resumed.to_pylist())
