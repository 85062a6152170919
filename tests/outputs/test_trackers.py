"""run.tracker: what MLflow and TensorBoard hold equals metrics.parquet, read back with each
tracker's own reader; W&B offline writes its run folder; a missing library is named."""

from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fslsage_ray.cli import main
from fslsage_ray.config import ConfigError, load_config
from fslsage_ray.simulation import Simulation

QUICK = [
    "runtime.backend=inprocess",  # only the driver logs, whichever backend runs the rounds
    "run.rounds=2",
    "algorithm.num_clients=2",
    "data.train_subset=300",
    "run.checkpoint_every=0",
]


def _columns(run_dir) -> dict[str, list[float]]:
    """metrics.parquet's numeric columns (booleans as 0/1), as floats."""
    table = pq.read_table(run_dir / "metrics.parquet")
    kinds = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean)
    return {
        field.name: [float(v) for v in table.column(field.name).to_pylist()]
        for field in table.schema
        if any(kind(field.type) for kind in kinds)
    }


def _equal(logged, expected) -> None:
    np.testing.assert_array_equal(np.asarray(logged), np.asarray(expected))  # NaN == NaN here


def test_compare_logs_each_run_and_the_comparison_to_an_mlflow_file_store(tmp_path, capsys):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    from mlflow.tracking import MlflowClient

    out = tmp_path / "cmp"
    argv = ["compare", "--quiet", "--out", str(out), "--methods", "fedavg,sflv2"]
    assert main([*argv, *QUICK, "run.tracker=mlflow", "run.tracker_project=trk"]) == 0
    client = MlflowClient((out / "mlruns").as_uri())  # default: next to the run folders
    experiment = client.get_experiment_by_name("trk")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["cmp", "fedavg", "sflv2"]

    for name in ("fedavg", "sflv2"):
        run = runs[name]
        assert run.info.status == "FINISHED"
        assert run.data.params["algorithm.name"] == name
        assert "run.tracker_uri" not in run.data.params
        assert run.data.tags["versions.torch"] and run.data.tags["seed"] == "200"
        columns = _columns(out / name)
        assert len(columns) >= 20
        for key, values in columns.items():  # every numeric column, every round, exactly
            history = client.get_metric_history(run.info.run_id, key)
            assert [m.step for m in history] == [0, 1], key
            _equal([m.value for m in history], values)
        by_gib = client.get_metric_history(run.info.run_id, "by_comm_kib/test_acc")
        assert [m.step for m in by_gib] == [b // 1024 for b in columns["comm_bytes_cum"]]
        _equal([m.value for m in by_gib], columns["test_acc"])
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "metrics.parquet", "provenance.json", "run.log"} <= files

    files = {a.path for a in client.list_artifacts(runs["cmp"].info.run_id)}
    assert {"summary.md", "accuracy_vs_gib.png", "comparison.parquet"} <= files
    assert runs["cmp"].data.params["compare.runs"] == '["fedavg", "sflv2"]'
    assert "algorithm.name" not in runs["cmp"].data.params


def test_tensorboard_events_read_back_equal_the_metrics_table_also_after_a_resume(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    overrides = [*QUICK, "alignment.epochs=2", "run.tracker=tensorboard", "run.rounds=1"]
    config = load_config(None, [*overrides, "run.checkpoint_every=1"])
    Simulation(config, tmp_path / "run", progress=False).run()
    Simulation.resume(tmp_path / "run", ["run.rounds=2"], progress=False).run()
    assert len(list((tmp_path / "run" / "tensorboard").glob("events.*"))) == 2
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    columns = _columns(tmp_path / "run")
    for key, values in columns.items():
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [0, 1], key
        _equal([s.value for s in scalars], np.float32(values))  # TensorBoard keeps float32
    scalars = events.Scalars("by_comm_kib/test_loss")
    assert [s.step for s in scalars] == [b // 1024 for b in columns["comm_bytes_cum"]]
    texts = events.Tags()["tensors"]
    assert {"config/text_summary", "files/provenance.json/text_summary"} <= set(texts)


def test_a_failed_run_is_closed_in_the_tracker_as_failed(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    from mlflow.tracking import MlflowClient

    from fslsage_ray.runtime.inprocess import InProcessBackend

    calls = []

    def evaluate(self, parts):  # the second evaluation breaks, as a real error would
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("evaluation broke")
        return original(self, parts)

    original = InProcessBackend.evaluate
    monkeypatch.setattr(InProcessBackend, "evaluate", evaluate)
    config = load_config(None, [*QUICK, "algorithm.name=fedavg", "run.tracker=mlflow"])
    with pytest.raises(RuntimeError, match="evaluation broke"):
        Simulation(config, tmp_path / "run", progress=False).run()
    client = MlflowClient((tmp_path / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("fslsage-ray").experiment_id])
    assert run.info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test_acc")] == [0]


def test_wandb_offline_writes_its_run_folder(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'fslsage-ray[wandb]')")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    config = load_config(None, [*QUICK, "algorithm.name=fedavg", "run.tracker=wandb"])
    Simulation(config, tmp_path / "run", progress=False).run()
    (folder,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    assert list(folder.glob("run-*.wandb"))  # the run's records, for `wandb sync` later
    assert (folder / "files" / "metrics.parquet").is_file()


@pytest.mark.parametrize(
    ("tracker", "module"),
    [("mlflow", "mlflow"), ("tensorboard", "torch.utils.tensorboard"), ("wandb", "wandb")],
)
def test_a_missing_tracker_library_is_named_before_any_work(
    tmp_path, monkeypatch, capsys, tracker, module
):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
    out = tmp_path / "run"
    assert main(["run", "--quiet", "--out", str(out), *QUICK, f"run.tracker={tracker}"]) == 2
    err = capsys.readouterr().err
    assert f"pip install 'fslsage-ray[{tracker}]'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_tracker_settings_are_checked():
    with pytest.raises(ConfigError, match="run.tracker must be one of"):
        load_config(None, ["run.tracker=neptune"])
    with pytest.raises(ConfigError, match="must not hold credentials"):
        load_config(None, ["run.tracker_uri=https://me:secret@mlflow.example.org"])
