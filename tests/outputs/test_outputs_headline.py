"""Outputs follow the task: runs judged by test loss (language models) are read, compared,
summarized and plotted in loss, and never mixed with runs judged by accuracy.
"""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_outputs_plots import assert_png

from fslsage_ray import registry
from fslsage_ray.compare import parse_methods
from fslsage_ray.config import ConfigError
from fslsage_ray.outputs import plots
from fslsage_ray.outputs.headline import (
    GOAL_KEY,
    HEADLINE_KEY,
    HeadlineMetric,
    headline_from_metadata,
)
from fslsage_ray.outputs.metrics import MetricsTable
from fslsage_ray.outputs.progress import Progress
from fslsage_ray.outputs.runs import (
    best_within_budget,
    common_headline,
    gib_to_target,
    load_run,
    load_runs,
)
from fslsage_ray.outputs.summary import summarize, to_markdown

# Losses per round; with 2 GiB per round the cumulative GiB are 2, 4, 6, 8, 10.
LOSSES = [3.0, 2.4, 1.9, 2.1, 1.5]


def _table(headline: str = "test_loss", goal: str = "min") -> MetricsTable:
    table = MetricsTable(headline=headline, goal=goal)
    for rnd, loss in enumerate(LOSSES):
        table.add_round({"round": rnd, "test_loss": loss, "test_ppl": math.exp(loss)}, {})
    return table


# --- the metrics file carries the headline ---------------------------------------------------
def test_metrics_table_writes_headline_into_schema_metadata(tmp_path: Path):
    table = _table()
    table.write(tmp_path / "metrics.parquet")
    metadata = pq.read_schema(tmp_path / "metrics.parquet").metadata
    assert metadata[HEADLINE_KEY] == b"test_loss"
    assert metadata[GOAL_KEY] == b"min"
    assert pq.read_table(tmp_path / "metrics.parquet").to_pylist() == table.rows  # rows unchanged


def test_metrics_table_defaults_to_accuracy():
    table = MetricsTable()
    assert (table.headline, table.goal) == ("test_acc", "max")
    metadata = table.to_arrow().schema.metadata  # even with no rows yet
    assert metadata[HEADLINE_KEY] == b"test_acc" and metadata[GOAL_KEY] == b"max"


def test_metrics_table_refuses_an_unknown_goal():
    with pytest.raises(ValueError, match="goal must be one of"):
        MetricsTable(headline="test_loss", goal="lower")


def test_old_tables_fall_back_on_their_columns():
    assert headline_from_metadata(None, ["round", "test_acc", "test_loss"]) == HeadlineMetric()
    assert headline_from_metadata({}, ["round", "test_loss"]) == HeadlineMetric("test_loss", "min")


# --- run folders --------------------------------------------------------------------------
def test_load_lm_run(make_lm_run):
    rec = load_run(make_lm_run("lm", "fsl_sage", LOSSES, 2.0))
    assert (rec.headline, rec.goal) == ("test_loss", "min")
    assert "test_acc" not in rec.metrics[0]
    assert rec.final_headline == pytest.approx(1.5)
    assert rec.best_headline == pytest.approx(1.5)
    assert rec.method_label == "FSL-SAGE"


def test_accuracy_runs_without_metadata_stay_accuracy_runs(make_run):
    rec = load_run(make_run("acc", "fedavg", [0.5, 0.7, 0.6], 1.0))
    assert (rec.headline, rec.goal) == ("test_acc", "max")
    assert rec.final_headline == pytest.approx(0.6)
    assert rec.best_headline == pytest.approx(0.7)


def test_lm_run_without_its_headline_column_is_refused(make_lm_run):
    run = make_lm_run("lm", "fedavg", [2.0], 1.0)
    table = pq.read_table(run / "metrics.parquet").drop_columns(["test_loss"])
    pq.write_table(table, run / "metrics.parquet")  # metadata still names test_loss
    with pytest.raises(ValueError, match=r"lacks the column\(s\) test_loss"):
        load_run(run)


def test_gib_to_target_with_a_min_goal(make_lm_run):
    rec = load_run(make_lm_run("lm", "fsl_sage", LOSSES, 2.0))
    assert gib_to_target(rec, 2.0) == pytest.approx(6.0)  # first round at or below 2.0
    assert gib_to_target(rec, 2.4) == pytest.approx(4.0)  # the target itself counts
    assert gib_to_target(rec, 3.5) == pytest.approx(2.0)
    assert gib_to_target(rec, 1.0) is None


def test_gib_to_target_with_a_min_goal_ignores_nan(make_lm_run):
    rec = load_run(make_lm_run("lm", "fedavg", [math.nan, 1.0], 1.0))
    assert gib_to_target(rec, 2.0) == pytest.approx(2.0)


def test_best_within_budget_with_a_min_goal(make_lm_run):
    rec = load_run(make_lm_run("lm", "fedavg", LOSSES, 2.0))
    assert best_within_budget(rec, 4.0) == pytest.approx(2.4)
    assert best_within_budget(rec, 8.0) == pytest.approx(1.9)  # lowest, not the last
    assert best_within_budget(rec, 1.0) is None


def test_mixed_headlines_are_refused(make_run, make_lm_run):
    records = load_runs(
        [make_run("acc", "fedavg", [0.5], 1.0), make_lm_run("lm", "fedavg", [2.0], 1.0)]
    )
    with pytest.raises(ValueError, match="different headline metrics") as info:
        common_headline(records)
    assert "\n" not in str(info.value)
    assert "test_acc: acc" in str(info.value) and "test_loss: lm" in str(info.value)


# --- figures ------------------------------------------------------------------------------
def test_plot_all_lm_draws_loss_not_accuracy(make_lm_run, tmp_path, legends):
    make_lm_run("lm/sage", "fsl_sage", LOSSES, 2.0, align_every=2)
    make_lm_run("lm/fedavg", "fedavg", [3.2, 2.9, 2.6], 5.0)
    paths = plots.plot_all(load_runs(tmp_path / "lm"), tmp_path / "figs", target=2.0)
    assert [p.name for p in paths] == ["loss_vs_gib.png", "am_error.png"]
    for path in paths:
        assert_png(path)
    assert legends[0] == [
        "FedAvg (loss 2 not reached)",
        "FSL-SAGE (loss 2 at 6.0 GiB)",
        "target loss 2",
    ]


def test_plot_all_lm_sweep_plots_lowest_loss_vs_alpha(make_lm_run, tmp_path, legends):
    for alpha, penalty in ((0.1, 0.5), (1.0, 0.0)):
        losses = [loss + penalty for loss in LOSSES]
        for method in ("fsl_sage", "fedavg"):
            folder = f"sw/{method}-a{alpha:g}"
            make_lm_run(folder, method, losses, 2.0, partition="dirichlet", alpha=alpha)
    records = load_runs(tmp_path / "sw")
    paths = plots.plot_all(records, tmp_path / "figs", budgets=(4, 100))
    assert [p.name for p in paths] == ["loss_vs_gib.png", "best_loss_vs_alpha.png"]
    assert_png(paths[-1])
    assert "FSL-SAGE, ≤ 4 GiB" in legends[-1]
    assert not (tmp_path / "figs" / "accuracy_vs_gib.png").exists()


def test_plot_all_refuses_mixed_folders(make_run, make_lm_run, tmp_path):
    make_run("mixed/acc", "fedavg", [0.5, 0.6], 1.0)
    make_lm_run("mixed/lm", "fedavg", [3.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="different headline metrics"):
        plots.plot_all(load_runs(tmp_path / "mixed"), tmp_path / "figs")


def test_no_default_target_for_loss():
    assert plots.default_target("cifar10", "test_loss") is None


# --- summary ------------------------------------------------------------------------------
def test_summary_of_lm_runs(make_lm_run, tmp_path):
    make_lm_run("lm/sage", "fsl_sage", LOSSES, 2.0)
    make_lm_run("lm/fedavg", "fedavg", [3.2, 2.9, 2.6], 5.0)
    rows = summarize(load_runs(tmp_path / "lm"), 2.0)
    assert rows[1]["final_loss"] == pytest.approx(1.5) and rows[1]["best_loss"] == 1.5
    text = to_markdown(rows, 2.0)
    assert text.splitlines()[0] == (
        "| method | split | rounds | final loss | best loss | GiB total | GiB to loss 2 |"
    )
    assert "| FSL-SAGE | iid | 5 | 1.5000 | 1.5000 | 10.000 | 6.000 |" in text
    assert "| FedAvg | iid | 3 | 2.6000 | 2.6000 | 15.000 | not reached |" in text


def test_summary_of_accuracy_runs_is_unchanged(make_run, tmp_path):
    rows = summarize([load_run(make_run("a", "fedavg", [0.5, 0.85, 0.8], 1.0))], 0.81)
    assert rows[0]["final_acc"] == pytest.approx(0.8) and rows[0]["best_acc"] == 0.85
    assert to_markdown(rows, 0.81).splitlines() == [
        "| method | split | rounds | final acc | best acc | GiB total | GiB to 81% |",
        "|---|---|---|---|---|---|---|",
        "| FedAvg | iid | 3 | 80.00% | 85.00% | 3.000 | 2.000 |",
    ]


# --- progress bar and the run's last line --------------------------------------------------
ROW = {"comm_gib_cum": 1.5, "align_s": 0.2, "samples_per_s": 900.0}


def test_progress_shows_accuracy_by_default():
    bar = Progress(3, "run")
    bar.update({**ROW, "test_acc": 0.9123, "test_loss": 0.3})
    assert bar.bar.postfix == "GiB=1.500, acc=0.912, align_s=0.2, loss=0.300, samples_s=900"
    bar.close()


def test_progress_shows_the_loss_headline():
    bar = Progress(3, "run", headline="test_loss")
    bar.update({**ROW, "test_loss": 2.3456, "test_ppl": 10.44})
    assert bar.bar.postfix == "GiB=1.500, align_s=0.2, loss=2.346, ppl=10.44, samples_s=900"
    bar.close()


def test_done_line_reports_the_headline():
    from fslsage_ray.cli import _headline_result

    assert _headline_result(_table().to_arrow()) == "final test loss 1.5000 (best 1.5000)"
    acc = MetricsTable()
    for acc_value in (0.5, 0.9, 0.8):
        acc.add_round({"round": 0, "test_acc": acc_value}, {})
    assert _headline_result(acc.to_arrow()) == "final test accuracy 0.8000 (best 0.9000)"
    old = pa.table({"test_acc": [0.5, 0.7]})  # no metadata: written before headlines
    assert _headline_result(old) == "final test accuracy 0.7000 (best 0.7000)"


# --- the command line -----------------------------------------------------------------------
def main(argv: list[str]) -> int:
    from fslsage_ray.cli import main as cli_main  # imports the simulation (torch, Ray)

    return cli_main(argv)


def test_cli_plot_lm_with_target_loss(make_lm_run, tmp_path, capsys):
    make_lm_run("lm/sage", "fsl_sage", LOSSES, 2.0, align_every=2)
    make_lm_run("lm/fedavg", "fedavg", [3.2, 2.9, 2.6], 5.0)
    out = tmp_path / "figs"
    assert main(["plot", str(tmp_path / "lm"), "--out", str(out), "--target-loss", "2.0"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["am_error.png", "loss_vs_gib.png", "summary.md"]
    summary = (out / "summary.md").read_text()
    assert "| FSL-SAGE | iid | 5 | 1.5000 | 1.5000 | 10.000 | 6.000 |" in summary
    assert "GiB to loss 2" in capsys.readouterr().out


def test_cli_plot_refuses_an_accuracy_target_for_lm_runs(make_lm_run, tmp_path, capsys):
    run = make_lm_run("lm", "fsl_sage", LOSSES, 2.0)
    assert main(["plot", str(run), "--target", "0.8"]) == 2
    err = capsys.readouterr().err
    assert "use --target-loss" in err and err.count("\n") == 1


def test_cli_plot_refuses_a_loss_target_for_accuracy_runs(make_run, capsys):
    run = make_run("acc", "fedavg", [0.5, 0.6], 1.0)
    assert main(["plot", str(run), "--target-loss", "2.0"]) == 2
    assert "use --target" in capsys.readouterr().err


def test_cli_plot_refuses_mixed_folders_in_one_line(make_run, make_lm_run, tmp_path, capsys):
    make_run("mixed/acc", "fedavg", [0.5, 0.6], 1.0)
    make_lm_run("mixed/lm", "fedavg", [3.0, 2.0], 1.0)
    assert main(["plot", str(tmp_path / "mixed")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: runs with different headline metrics") and err.count("\n") == 1


def test_cli_target_options_are_exclusive(make_lm_run, capsys):
    run = make_lm_run("lm", "fsl_sage", LOSSES, 2.0)
    with pytest.raises(SystemExit):
        main(["plot", str(run), "--target", "0.8", "--target-loss", "2.0"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_compare_methods_come_from_the_registry(monkeypatch):
    assert parse_methods("fsl_sage_lazy,fedavg") == ["fsl_sage_lazy", "fedavg"]
    monkeypatch.setitem(registry._ALGORITHMS, "my_method", registry.Entry("x:Y", "Mine"))
    assert parse_methods("my_method") == ["my_method"]
    with pytest.raises(ConfigError, match="unknown method.*choose from.*my_method"):
        parse_methods("flower")


def test_a_finished_bar_names_the_run_and_a_stopped_one_its_phase():
    done, stopped = Progress(1, "run"), Progress(2, "run")
    for bar in (done, stopped):
        bar.phase("round 0: evaluating")
        bar.update({**ROW, "test_acc": 0.5})
        bar.close()
    assert (done.bar.desc, stopped.bar.desc) == ("run", "round 0: evaluating")
