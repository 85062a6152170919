"""`plot` draws the leakage probes and tabulates them when runs carry probe columns; a
probe that cannot apply to a method (NaN) reads "n/a", never a measured 0."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_outputs_plots import assert_png

from fslsage_ray.cli import main
from fslsage_ray.outputs import probe_report
from fslsage_ray.outputs.runs import load_runs

NAN = math.nan
PROBE_ROUNDS = (1, 2)  # round 3 is not probed: the table must not read it


def add_probe_columns(folder: Path, columns: dict[str, tuple[float, float]]) -> Path:
    """Probe columns on the probe rounds (their two values), NaN on the others, as the
    simulator writes them."""
    path = folder / "metrics.parquet"
    rows = pq.read_table(path).to_pylist()
    for row in rows:
        for name, values in columns.items():
            rnd = row["round"]
            row[name] = values[PROBE_ROUNDS.index(rnd)] if rnd in PROBE_ROUNDS else NAN
    pq.write_table(pa.Table.from_pylist(rows), path)
    return folder


def probed(name: str, dcor, steal, psnr, ssim, exposed, grads) -> dict[str, tuple]:
    return {
        "dcor": dcor,
        "steal_acc": steal,
        "steal_loss": tuple(NAN if math.isnan(s) else 2.0 - s for s in steal),
        "recon_psnr_db": psnr,
        "recon_ssim": ssim,
        "recon_mean_psnr_db": (NAN, NAN) if math.isnan(psnr[0]) else (12.5, 12.5),
        "exposed_examples_cum": exposed,
        "grad_messages_cum": grads,
        "probe_s": (3.0, 3.0),
    }


@pytest.fixture
def probe_runs(make_run, tmp_path) -> Path:
    """FSL-SAGE measures every probe; SplitFed-SS has no AM to steal; FedAvg has no cut."""
    accs = [0.2, 0.3, 0.4, 0.5]
    add_probe_columns(
        make_run("cmp/fsl_sage", "fsl_sage", accs, 0.1),
        probed(
            "fsl_sage", (0.70, 0.80), (0.15, 0.25), (17.0, 18.0), (0.35, 0.45), (640, 1280), (0, 0)
        ),
    )
    add_probe_columns(
        make_run("cmp/sflv2", "sflv2", accs, 0.2),
        probed(
            "sflv2", (0.75, 0.85), (NAN, NAN), (17.5, 18.5), (0.40, 0.50), (1600, 3200), (160, 320)
        ),
    )
    add_probe_columns(
        make_run("cmp/fedavg", "fedavg", accs, 0.8),
        probed("fedavg", (NAN, NAN), (NAN, NAN), (NAN, NAN), (NAN, NAN), (0, 0), (0, 0)),
    )
    return tmp_path / "cmp"


def test_plot_writes_probe_figures_and_table(probe_runs, tmp_path, capsys):
    out = tmp_path / "figs"
    runs = [str(p) for p in sorted(probe_runs.iterdir())]
    assert main(["plot", *runs, "--out", str(out)]) == 0
    for column in ("dcor", "steal_acc", "recon_psnr_db", "recon_ssim"):
        for x in ("gib", "round"):
            assert_png(out / f"{column}_vs_{x}.png")
    # a classifier's stolen loss is said by its accuracy; the baselines go in the table only
    assert not list(out.glob("steal_loss_*")) and not list(out.glob("recon_mean_*"))

    summary = (out / "summary.md").read_text()
    assert probe_report.PROBE_TABLE_TITLE in summary
    lines = summary.split(probe_report.PROBE_TABLE_TITLE)[1].strip().splitlines()
    assert lines[0] == (
        "| method | round | test acc | GiB | dcor | steal acc | PSNR dB | mean-image PSNR dB"
        " | SSIM | examples exposed | grads received |"
    )
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert rows["FSL-SAGE"] == (
        "| FSL-SAGE | 2 | 40.0% | 0.300 | 0.800 | 25.0% | 18.0 | 12.5 | 0.450 | 1,280 | 0 |"
    )
    assert rows["SplitFed-SS"] == (
        "| SplitFed-SS | 2 | 40.0% | 0.600 | 0.850 | n/a | 18.5 | 12.5 | 0.500 | 3,200 | 320 |"
    )
    # no cut: n/a, not 0; its exposure is a measured 0
    assert rows["FedAvg"] == (
        "| FedAvg | 2 | 40.0% | 2.400 | n/a | n/a | n/a | n/a | n/a | 0 | 0 |"
    )
    assert probe_report.PROBE_TABLE_TITLE in capsys.readouterr().out


def test_a_method_without_the_probe_is_named_na_without_a_line(probe_runs, legends, tmp_path):
    records = load_runs(sorted(probe_runs.iterdir()))
    views = {v.column: v for v in probe_report.VIEWS}
    fig = probe_report.plot_probe(records, views["dcor"], "round", tmp_path / "d.png")
    assert legends[-1] == ["FedAvg: n/a", "FSL-SAGE", "SplitFed-SS"]
    drawn = {line.get_label(): list(line.get_xdata()) for line in fig.axes[0].get_lines()}
    assert drawn["FedAvg: n/a"] == []
    assert drawn["FSL-SAGE"] == [1, 2]  # the probe rounds only

    probe_report.plot_probe(records, views["steal_acc"], "comm_gib_cum", tmp_path / "s.png")
    assert legends[-1] == [
        "FedAvg: n/a",
        "FSL-SAGE",
        "FSL-SAGE, full split model",
        "SplitFed-SS: n/a",
    ]
    probe_report.plot_probe(records, views["recon_psnr_db"], "round", tmp_path / "p.png")
    assert legends[-1][-1] == "predicting the mean image (12.5)"


def test_runs_without_probes_get_no_probe_figures_or_table(make_run, tmp_path):
    records = load_runs([make_run("plain", "fsl_sage", [0.2, 0.4], 0.1)])
    assert probe_report.plot_probes(records, tmp_path / "figs") == []
    assert probe_report.probe_table(records) is None
    assert not (tmp_path / "figs").exists()
