"""Each figure is written, is a real non-blank PNG, and says what it should in its legend."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure
from PIL import Image

from fslsage_ray.outputs import plots
from fslsage_ray.outputs.runs import load_run, load_runs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 1, "image is blank"


def test_default_target():
    assert plots.default_target("cifar10") == 0.81
    assert plots.default_target("cifar100") == 0.50
    assert plots.default_target("digits") is None


def test_accuracy_vs_gib_with_target(make_run, tmp_path, legends):
    sage = make_run("sage", "fsl_sage", [0.5, 0.7, 0.82, 0.85], 12.2 / 3)  # 81% at 12.2 GiB
    fedavg = make_run("fedavg", "fedavg", [0.4, 0.6, 0.7], 30.0)
    out = tmp_path / "figs" / "acc.png"
    fig = plots.plot_accuracy_vs_gib(load_runs([sage, fedavg]), out, target=0.81)
    assert isinstance(fig, Figure)
    assert_png(out)
    assert legends[-1] == [
        "FSL-SAGE (81% at 12.2 GiB)",
        "FedAvg (81% not reached)",
        "target 81%",
    ]


def test_figure_without_a_path_shows_inline_and_writes_nothing(sweep, tmp_path):
    """What a notebook gets: a figure Jupyter renders as PNG, no file, nothing left in pyplot."""
    open_before = plt.get_fignums()
    fig = plots.plot_am_error(load_runs(sweep))
    assert fig._repr_png_()[:8] == PNG_SIGNATURE
    (tmp_path / "inline.png").write_bytes(fig._repr_png_())
    assert_png(tmp_path / "inline.png")
    assert list(tmp_path.rglob("*.png")) == [tmp_path / "inline.png"]
    assert plt.get_fignums() == open_before


def test_labels_carry_alpha_only_when_runs_differ(sweep, tmp_path, legends):
    records = load_runs(sweep)
    plots.plot_loss_vs_gib(records, tmp_path / "loss.png")
    assert "FSL-SAGE, α=0.1" in legends[-1]
    same_alpha = [r for r in records if r.alpha == 1.0]
    plots.plot_accuracy_vs_gib(same_alpha, tmp_path / "acc.png")
    assert_png(tmp_path / "acc.png")
    assert legends[-1] == ["FedAvg", "FSL-SAGE", "SplitFed-SS"]  # folder-name order


def test_duplicate_labels_get_run_names(make_run, tmp_path, legends):
    runs = [make_run(f"seed{s}", "fedavg", [0.5, 0.6], 1.0) for s in (1, 2)]
    plots.plot_loss_vs_gib(load_runs(runs), tmp_path / "loss.png")
    assert legends[-1] == ["FedAvg [seed1]", "FedAvg [seed2]"]


def test_loss_vs_gib(sweep, tmp_path):
    plots.plot_loss_vs_gib(load_runs(sweep), tmp_path / "loss.png")
    assert_png(tmp_path / "loss.png")


def test_best_accuracy_vs_alpha(sweep, tmp_path, legends):
    plots.plot_best_accuracy_vs_alpha(load_runs(sweep), tmp_path / "alpha.png")
    assert_png(tmp_path / "alpha.png")
    assert "FSL-SAGE, ≤ 50 GiB" in legends[-1]  # spent exactly 50 GiB: the budget bound
    assert "FSL-SAGE, ≤ 80 GiB (runs end below budget)" in legends[-1]
    assert "FedAvg, ≤ 80 GiB" in legends[-1]


def test_best_accuracy_vs_alpha_needs_dirichlet(make_run, tmp_path):
    iid = load_runs([make_run("iid", "fedavg", [0.5], 1.0)])
    with pytest.raises(ValueError, match="no run has a Dirichlet alpha"):
        plots.plot_best_accuracy_vs_alpha(iid, tmp_path / "alpha.png")


def test_best_accuracy_vs_alpha_needs_a_round_in_budget(make_run, tmp_path):
    big = make_run("big", "fedavg", [0.5], 500.0, partition="dirichlet", alpha=0.1)
    with pytest.raises(ValueError, match="no Dirichlet run has a round within the budgets"):
        plots.plot_best_accuracy_vs_alpha([load_run(big)], tmp_path / "alpha.png")


def test_am_error(sweep, tmp_path, legends):
    plots.plot_am_error(load_runs(sweep), tmp_path / "am.png")
    assert_png(tmp_path / "am.png")
    assert "FSL-SAGE, α=0.1, before alignment" in legends[-1]
    assert not any("FedAvg" in text for text in legends[-1])


def test_am_error_needs_data(make_run, tmp_path):
    runs = load_runs([make_run("f", "fedavg", [0.5, 0.6], 1.0)])
    with pytest.raises(ValueError, match="no run has auxiliary-model error data"):
        plots.plot_am_error(runs, tmp_path / "am.png")


def test_empty_records(tmp_path):
    with pytest.raises(ValueError, match="no runs to plot"):
        plots.plot_accuracy_vs_gib([], tmp_path / "acc.png")


def test_plot_all_sweep(sweep, tmp_path):
    paths = plots.plot_all(load_runs(sweep), tmp_path / "figs")
    assert [p.name for p in paths] == [
        "accuracy_vs_gib.png",
        "loss_vs_gib.png",
        "am_error.png",
        "best_accuracy_vs_alpha.png",
    ]
    for path in paths:
        assert_png(path)


def test_plot_all_without_sage_or_sweep(make_run, tmp_path):
    runs = load_runs([make_run("f", "fedavg", [0.5, 0.6], 1.0, dataset="digits")])
    paths = plots.plot_all(runs, tmp_path / "figs")
    assert [p.name for p in paths] == ["accuracy_vs_gib.png", "loss_vs_gib.png"]
