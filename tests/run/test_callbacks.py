"""Run callbacks: a user's own plugs in from code or from config, adds columns without
changing what is learned, can stop the run, and sees the events in their order."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest

from fslsage_ray.algorithms.jobs import JobReport
from fslsage_ray.callbacks import RunCallback
from fslsage_ray.config import ConfigError, load_config
from fslsage_ray.outputs.metrics import TIMING_COLUMNS
from fslsage_ray.run.record import job_figures
from fslsage_ray.simulation import Simulation

SMALL = [
    "runtime.backend=inprocess",
    "algorithm.num_clients=4",
    "algorithm.batch_size=32",
    "algorithm.upload_every=2",
    "alignment.every=2",
    "alignment.epochs=2",
    "data.train_subset=400",
    "data.test_subset=200",
    "run.rounds=3",
    "run.checkpoint_every=1",
]


def learning(rows: list[dict]) -> list[dict]:
    """Every learning column, NaN as None so that it equals itself."""
    return [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
        for r in ({k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows)
    ]


def run(tmp_path, name: str, *extra: str, callbacks=()) -> list[dict]:
    config = load_config(None, [*SMALL, *extra])
    sim = Simulation(config, run_dir=tmp_path / name, progress=False, callbacks=callbacks)
    return sim.run().to_pylist()


class Recorder(RunCallback):
    """Every event, in order, as short strings."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def on_run_start(self, run):
        self.events.append(f"start {run.config.run.name} rows={len(run.rows)}")

    def on_round_start(self, round_idx):
        self.events.append(f"round {round_idx}")

    def on_phase(self, text):
        if not self.events[-1].startswith("phase"):  # one entry per run of phases
            self.events.append("phase")

    def round_columns(self, row):
        self.events.append(f"columns {row['round']}")
        return {"probe_round_twice": 2 * row["round"]}

    def on_round_recorded(self, row):
        self.events.append(f"recorded {row['round']} probe={row['probe_round_twice']}")

    def on_restore(self, rows):
        self.events.append(f"restore {len(rows)}")

    def on_run_end(self, ok):
        self.events.append(f"end ok={ok}")


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> list[dict]:
    return run(tmp_path_factory.mktemp("plain"), "run")


def test_a_callback_from_code_adds_a_column_and_leaves_learning_untouched(tmp_path, plain):
    recorder = Recorder()
    rows = run(tmp_path, "run", callbacks=[recorder])
    assert [r["probe_round_twice"] for r in rows] == [0, 2, 4]
    without = [{k: v for k, v in r.items() if k != "probe_round_twice"} for r in rows]
    assert learning(without) == learning(plain)  # bit for bit, every learning column
    stored = pq.read_table(tmp_path / "run" / "metrics.parquet").column_names
    assert stored[-1] == "probe_round_twice"  # after every built-in column
    assert stored[:-1] == list(plain[0])


def test_events_come_in_order(tmp_path):
    recorder = Recorder()
    run(tmp_path, "run", "run.rounds=2", callbacks=[recorder])
    per_round = ["phase", "columns {t}", "recorded {t} probe={p}"]
    assert recorder.events == [
        "start run rows=0",
        "phase",  # starting workers
        "restore 0",
        *(e.format(t=0, p=0) for e in ["round 0", *per_round]),
        *(e.format(t=1, p=2) for e in ["round 1", *per_round]),
        "end ok=True",
    ]


def test_a_resume_restores_the_rows_and_their_columns(tmp_path):
    run(tmp_path, "run", "run.rounds=2", callbacks=[Recorder()])
    recorder = Recorder()
    sim = Simulation.resume(
        tmp_path / "run", ["run.rounds=3"], progress=False, callbacks=[recorder]
    )
    rows = sim.run().to_pylist()
    assert [r["probe_round_twice"] for r in rows] == [0, 2, 4]
    assert recorder.events[:3] == ["start run rows=0", "phase", "restore 2"]


def test_a_callback_from_config_adds_its_column(tmp_path, plain):
    rows = run(tmp_path, "run", "run.callbacks=[probe_callbacks:AccuracyGrade]")
    assert [r["grade"] for r in rows] == ["pass" if r["test_acc"] >= 0.5 else "fail" for r in rows]
    assert learning([{k: v for k, v in r.items() if k != "grade"} for r in rows]) == learning(plain)
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.run.callbacks == ["probe_callbacks:AccuracyGrade"]


def test_a_stop_rule_callback_ends_the_run(tmp_path, plain):
    rows = run(tmp_path, "run", "run.callbacks=[probe_callbacks:StopAfterTwoRounds]")
    assert len(rows) == 2
    assert learning(rows) == learning(plain[:2])
    log = (tmp_path / "run" / "run.log").read_text()
    assert "stopping after round 1: two rounds are enough" in log


def test_a_failing_run_still_ends_every_callback(tmp_path):
    class Breaks(RunCallback):
        def on_round_recorded(self, row):
            raise RuntimeError("probe broke")

    recorder = Recorder()
    with pytest.raises(RuntimeError, match="probe broke"):
        run(tmp_path, "run", callbacks=[recorder, Breaks()])
    assert recorder.events[-1] == "end ok=False"


def test_a_callback_may_not_replace_a_column(tmp_path):
    class Overwrites(RunCallback):
        def round_columns(self, row):
            return {"test_acc": 1.0}

    with pytest.raises(ValueError, match="adds column 'test_acc', which the row already has"):
        run(tmp_path, "run", callbacks=[Overwrites()])


@pytest.mark.parametrize(
    "entry, needle",
    [
        ("no_colon_here", "must read 'package.module:Name'"),
        ("no_such_package.mod:Name", "cannot be imported"),
        ("probe_callbacks:Missing", "has no callable Missing"),
        ("probe_callbacks:not_a_callback", "made a object, not a RunCallback"),
    ],
)
def test_a_bad_callback_name_is_refused_in_one_line_before_any_work(tmp_path, entry, needle):
    config = load_config(None, [*SMALL, f"run.callbacks=[{entry}]"])
    with pytest.raises(ConfigError, match=needle) as caught:
        Simulation(config, run_dir=tmp_path / "run", progress=False)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()  # refused before the folder was made


def test_job_figures_are_the_algorithms_columns_in_its_order():
    reports = [
        JobReport(0, {}, {"extra_fig": 1.0, "b": 2.0}),
        JobReport(1, {}, {"b": 4.0}),
    ]
    figures = job_figures(("a", "b"), reports)
    assert list(figures) == ["a", "b", "extra_fig"]
    assert math.isnan(figures["a"]) and figures["b"] == 3.0 and figures["extra_fig"] == 1.0
    assert list(job_figures(("a",), [])) == ["a"]


def test_a_resume_may_add_a_callback_whose_column_starts_there(tmp_path, plain):
    run(tmp_path, "run", "run.rounds=2")
    overrides = ["run.rounds=3", "run.callbacks=[probe_callbacks:AccuracyGrade]"]
    rows = Simulation.resume(tmp_path / "run", overrides, progress=False).run().to_pylist()
    assert [r["grade"] is None for r in rows] == [True, True, False]
    assert learning([{k: v for k, v in r.items() if k != "grade"} for r in rows]) == learning(plain)
    assert pq.read_table(tmp_path / "run" / "metrics.parquet").column_names[-1] == "grade"
