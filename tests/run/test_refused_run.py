"""A run refused at start-up leaves the output folder as it was: refused before the run
folder exists (the 'auto' GPU fit), or, refused after it was made (a refusal as the run
starts), with what this run wrote removed and what was there before kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fslsage_ray.callbacks import RunCallback
from fslsage_ray.cli import main
from fslsage_ray.config import ConfigError, load_config
from fslsage_ray.outputs.provenance import PROVENANCE_FILE
from fslsage_ray.simulation import Simulation

SMALL = [
    "runtime.backend=inprocess",
    "algorithm.num_clients=2",
    "data.train_subset=200",
    "data.test_subset=100",
    "run.rounds=1",
]


def listing(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under `root`, by relative path."""
    out: dict[str, bytes | None] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(Path(folder) / name, root)] = None
        for name in files:
            path = Path(folder) / name
            out[os.path.relpath(path, root)] = path.read_bytes()
    return out


class RefuseAtStart(RunCallback):
    """Refuses the run as it starts: after its folder, config and provenance are written."""

    def __init__(self) -> None:
        self.saw_folder: Path | None = None

    def on_run_start(self, run) -> None:
        self.saw_folder = run.run_dir
        raise ConfigError("refused at start for the test")


def test_a_layout_the_gpu_fit_refuses_leaves_no_run_folder(tmp_path, capsys) -> None:
    """`fslsage-ray run` with a GPU too small for any actor: one line, nothing written."""
    out = tmp_path / "runs"
    out.mkdir()
    (out / "earlier.txt").write_text("kept")
    before = listing(tmp_path)
    code = main(
        [
            "run",
            "--quiet",
            "--out",
            str(out / "refused"),
            *SMALL[1:],
            "runtime.actor_num_gpus=auto",
            "runtime.server_num_gpus=auto",
            "runtime.local_num_gpus=1",
            "runtime.gpu_memory_gb=0.5",
        ]
    )
    assert code != 0
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: the server actor needs")
    assert "the CUDA context alone takes all of it" in errors[0]
    assert listing(tmp_path) == before


def test_a_run_refused_as_it_starts_removes_what_it_wrote(tmp_path) -> None:
    before = listing(tmp_path)
    refuse = RefuseAtStart()
    config = load_config(None, [*SMALL, f"run.out_dir={tmp_path / 'runs' / 'nested'}"])
    sim = Simulation(config, progress=False, callbacks=[refuse])
    with pytest.raises(ConfigError, match="refused at start for the test"):
        sim.run()
    # the folder and its config, log and provenance existed when the run was refused
    assert refuse.saw_folder is not None and refuse.saw_folder.parent.parent.parent == tmp_path
    assert listing(tmp_path) == before  # the folders made for it (runs/nested/...) gone too
    assert sim.run_dir is None


def test_a_refused_overwrite_keeps_what_the_earlier_run_left(tmp_path) -> None:
    """--overwrite drops the earlier run's config, metrics and log as it starts; anything
    else there (its checkpoint, its provenance as it was) is left as it was."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(b"earlier checkpoint")
    (folder / PROVENANCE_FILE).write_text('{"starts": ["earlier"]}')
    (folder / "config.yaml").write_text("earlier: config\n")
    sim = Simulation(
        load_config(None, SMALL),
        folder,
        overwrite=True,
        progress=False,
        callbacks=[RefuseAtStart()],
    )
    with pytest.raises(ConfigError):
        sim.run()
    assert listing(tmp_path) == {
        "run": None,
        "run/checkpoint.pt": b"earlier checkpoint",
        f"run/{PROVENANCE_FILE}": b'{"starts": ["earlier"]}',
    }


def test_a_refused_run_to_a_uri_leaves_nothing_there(tmp_path) -> None:
    target = tmp_path / "remote"
    sim = Simulation(
        load_config(None, SMALL),
        f"file://{target}/run",
        progress=False,
        callbacks=[RefuseAtStart()],
    )
    with pytest.raises(ConfigError):
        sim.run()
    assert not any(p.is_file() for p in target.rglob("*"))
