"""Reading run folders back and the two comparison numbers, checked by hand."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fslsage_ray.outputs.runs import best_within_budget, gib_to_target, load_run, load_runs


def test_record_properties(make_run):
    rec = load_run(make_run("a", "fsl_sage", [0.1, 0.2, 0.3], 2.0))
    assert rec.method == "fsl_sage"
    assert rec.method_label == "FSL-SAGE"
    assert rec.dataset == "cifar10"
    assert rec.alpha is None  # iid: alpha in the config is unused
    assert rec.rounds == 3
    assert rec.column("round") == [0, 1, 2]


@pytest.mark.parametrize(
    ("method", "lazy", "label"),
    [
        ("fsl_sage", True, "FSL-SAGE (lazy)"),
        ("fsl_sage_lazy", False, "FSL-SAGE (lazy)"),
        ("fedavg", False, "FedAvg"),
        ("sflv1", False, "SplitFed-MS"),
        ("sflv2", False, "SplitFed-SS"),
        ("cse_fsl", False, "CSE-FSL"),
        ("fsl_an", False, "FSL-AN"),
        ("my_new_method", False, "my_new_method"),
    ],
)
def test_method_labels(make_run, method, lazy, label):
    assert load_run(make_run("r", method, [0.5], 1.0, lazy=lazy)).method_label == label


def test_alpha_only_for_dirichlet(make_run):
    dirichlet = load_run(make_run("d", "fedavg", [0.5], 1.0, partition="dirichlet", alpha=0.3))
    shards = load_run(make_run("s", "fedavg", [0.5], 1.0, partition="shards", alpha=0.3))
    assert dirichlet.alpha == pytest.approx(0.3)
    assert shards.alpha is None


def test_gib_to_target(make_run):
    # cumulative GiB per round: 2.5, 5.0, 7.5, 10.0
    rec = load_run(make_run("a", "fsl_sage", [0.40, 0.81, 0.79, 0.90], 2.5))
    assert gib_to_target(rec, 0.81) == pytest.approx(5.0)  # first crossing, not a later one
    assert gib_to_target(rec, 0.85) == pytest.approx(10.0)
    assert gib_to_target(rec, 0.30) == pytest.approx(2.5)
    assert gib_to_target(rec, 0.95) is None


def test_gib_to_target_ignores_nan_accuracy(make_run):
    rec = load_run(make_run("a", "fedavg", [math.nan, 0.9], 1.0))
    assert gib_to_target(rec, 0.5) == pytest.approx(2.0)


def test_best_within_budget(make_run):
    # cumulative GiB per round: 3, 6, 9, 12
    rec = load_run(make_run("a", "fedavg", [0.50, 0.70, 0.65, 0.80], 3.0))
    assert best_within_budget(rec, 9.0) == pytest.approx(0.70)  # budget is inclusive
    assert best_within_budget(rec, 8.9) == pytest.approx(0.70)
    assert best_within_budget(rec, 5.0) == pytest.approx(0.50)
    assert best_within_budget(rec, 100.0) == pytest.approx(0.80)
    assert best_within_budget(rec, 2.0) is None  # even round 0 costs more


def test_load_runs_parent_folder(sweep: Path):
    records = load_runs(sweep)
    assert len(records) == 9
    assert [r.path.name for r in records] == sorted(p.name for p in sweep.iterdir())
    assert {r.alpha for r in records} == {0.1, 1.0, 10.0}
    assert {r.method_label for r in records} == {"FSL-SAGE", "FedAvg", "SplitFed-SS"}


def test_load_runs_mixes_runs_and_parents(sweep: Path, make_run):
    single = make_run("single", "cse_fsl", [0.5], 1.0)
    records = load_runs([single, str(sweep)])
    assert len(records) == 10
    assert records[0].method_label == "CSE-FSL"


def test_load_runs_skips_unstarted_run(sweep: Path):
    started = sweep / "not-started"
    started.mkdir()
    (started / "config.yaml").write_text("run: {name: x}\n")
    with pytest.warns(UserWarning, match="not-started"):
        assert len(load_runs(sweep)) == 9


def test_missing_folder(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run(tmp_path / "nope")


def test_folder_without_metrics(tmp_path: Path):
    (tmp_path / "config.yaml").write_text("run: {name: x}\n")
    with pytest.raises(FileNotFoundError, match="not a run folder: metrics.parquet is missing"):
        load_run(tmp_path)


def test_parent_without_runs(tmp_path: Path):
    (tmp_path / "empty-child").mkdir()
    with pytest.raises(FileNotFoundError, match="neither a run folder nor a folder of run"):
        load_runs(tmp_path)


def test_config_not_a_mapping(make_run):
    run = make_run("a", "fedavg", [0.5], 1.0)
    (run / "config.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="does not hold a config mapping"):
        load_run(run)


def test_metrics_missing_columns(make_run):
    run = make_run("a", "fedavg", [0.5], 1.0)
    pq.write_table(pa.table({"round": [0], "test_acc": [0.5]}), run / "metrics.parquet")
    with pytest.raises(ValueError, match="lacks the column.*comm_gib_cum"):
        load_run(run)


def test_metrics_not_parquet(make_run):
    run = make_run("a", "fedavg", [0.5], 1.0)
    (run / "metrics.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="not a readable parquet file"):
        load_run(run)


def test_labels_match_algorithm_classes():
    """runs.py reads labels from the torch-free registry; they must not drift from the classes."""
    from fslsage_ray import registry

    for name in registry.algorithm_names():
        assert registry.method_label(name) == registry.algorithm_class(name).label, name


def test_reading_run_folders_imports_no_torch():
    """Run folders are read, summarized and plotted where torch is not installed."""
    code = (
        "import sys\n"
        "import fslsage_ray.outputs.runs, fslsage_ray.outputs.summary, fslsage_ray.outputs.plots\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_client_major_order_shows_in_the_label(make_run):
    record = load_run(make_run("cm", "fsl_sage", [0.5], 1.0))
    record.config.setdefault("algorithm", {})["server_order"] = "client_major"
    assert record.method_label == "FSL-SAGE, client-major"
