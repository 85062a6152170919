"""`compare` runs several methods on one split and seed; `plot` redraws from run folders."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from fslsage_ray.cli import main
from fslsage_ray.compare import design_comparison, parse_methods, parse_seeds, parse_sweep
from fslsage_ray.config import ConfigError, load_config

QUICK = [
    "runtime.backend=inprocess",
    "run.rounds=2",
    "algorithm.num_clients=4",
    "data.train_subset=400",
    "alignment.epochs=5",
]


def test_compare_writes_runs_table_figures_and_summary(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            "--quiet",
            "--out",
            str(out),
            "--methods",
            "fsl_sage,fedavg,sflv2",
            "--target",
            "0.5",
            *QUICK,
        ]
    )
    assert code == 0
    table = pq.read_table(out / "comparison.parquet").to_pylist()
    assert sorted({r["run"] for r in table}) == ["fedavg", "fsl_sage", "sflv2"]
    assert len(table) == 6
    for name in ("accuracy_vs_gib.png", "loss_vs_gib.png", "am_error.png", "summary.md"):
        assert (out / name).stat().st_size > 0, name
    text = capsys.readouterr().out
    assert "FSL-SAGE" in text and "SplitFed-SS" in text and "GiB to 50%" in text

    # plot redraws the same figures from the finished folders into another place
    again = tmp_path / "again"
    assert main(["plot", str(out), "--out", str(again)]) == 0
    assert (again / "accuracy_vs_gib.png").stat().st_size > 0


def test_sweep_names_one_run_per_method_and_value():
    config = load_config(None, ["data.partition=dirichlet"])
    runs = design_comparison(config, ["fsl_sage", "cse_fsl"], parse_sweep("data.alpha=1,100"))
    assert [name for name, _ in runs] == [
        "fsl_sage-alpha1",
        "cse_fsl-alpha1",
        "fsl_sage-alpha100",
        "cse_fsl-alpha100",
    ]
    assert runs[2][1].data.alpha == 100.0 and runs[2][1].algorithm.name == "fsl_sage"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: parse_methods("fsl_sage,flower"), "unknown method"),
        (lambda: parse_sweep("data.alpha"), "must look like"),
        (
            lambda: design_comparison(load_config(), ["fsl_sage"], ("data.alpha", ["-1"])),
            "data.alpha",
        ),
    ],
)
def test_bad_compare_input_is_refused(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_plot_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err


def test_seeds_repeat_every_run_and_bad_seeds_are_refused():
    config = load_config(None, [])
    runs = design_comparison(config, ["fedavg"], parse_sweep("algorithm.num_clients=4,8"), [7, 8])
    assert [name for name, _ in runs] == [
        "fedavg-num_clients4-seed7",
        "fedavg-num_clients4-seed8",
        "fedavg-num_clients8-seed7",
        "fedavg-num_clients8-seed8",
    ]
    assert [(c.run.seed, c.algorithm.num_clients) for _, c in runs][1] == (8, 4)
    for bad in ("7,7", "a", "-1"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)
