"""Swept settings are named in tables and legends; repeats over seeds become mean ± spread."""

from __future__ import annotations

import pytest

from fslsage_ray.outputs import plots
from fslsage_ray.outputs.runs import load_runs
from fslsage_ray.outputs.settings import group_runs, varying_keys
from fslsage_ray.outputs.summary import summarize, to_markdown

# accuracy per round, by (method, clients, seed): seeds differ by 0.1 at the end
CURVES = {
    ("fsl_sage", 10, 1): [0.5, 0.8],
    ("fsl_sage", 10, 2): [0.5, 0.6],
    ("fsl_sage", 50, 1): [0.4, 0.7],
    ("fsl_sage", 50, 2): [0.4, 0.7],
}


@pytest.fixture
def study(make_run, tmp_path):
    for (method, clients, seed), accs in CURVES.items():
        make_run(
            f"s/{method}-n{clients}-seed{seed}", method, accs, 1.0, seed=seed, num_clients=clients
        )
    return load_runs(tmp_path / "s")


def test_the_swept_key_and_its_value_name_each_row(study):
    assert varying_keys(study) == ["algorithm.num_clients"]
    groups = group_runs(study)
    assert [(g.setting, g.seeds) for g in groups] == [
        ("num_clients = 10", [1, 2]),
        ("num_clients = 50", [1, 2]),
    ]
    rows = summarize(study, 0.75)
    assert rows[0]["final_acc"] == pytest.approx(0.7)
    assert rows[0]["final_acc_sd"] == pytest.approx(0.1414, abs=1e-4)
    assert rows[1]["final_acc_sd"] == 0.0
    lines = to_markdown(rows, 0.75).splitlines()
    assert lines[0] == (
        "| method | split | setting | seeds | rounds | final acc | best acc | GiB total "
        "| GiB to 75% |"
    )
    assert lines[2] == (
        "| FSL-SAGE | iid | num_clients = 10 | 2 | 2 | 70.00% ± 14.14% | 70.00% ± 14.14% "
        "| 2.000 | reached by 1 of 2 seeds |"
    )
    assert lines[3].endswith("| not reached |")


def test_legends_name_the_setting_and_the_seeds(study, tmp_path, legends):
    plots.plot_accuracy_vs_gib(study, tmp_path / "acc.png")
    assert legends[-1] == [
        "FSL-SAGE, num_clients = 10 (mean ± sd, 2 seeds)",
        "FSL-SAGE, num_clients = 50 (mean ± sd, 2 seeds)",
    ]


def test_the_layout_names_runs_only_when_nothing_else_tells_them_apart(make_run, tmp_path):
    """Methods run on different layouts are labelled by what they learn from (a layout
    never changes what a run learns); a sweep over the layout itself is labelled by it."""
    ray = {"backend": "ray", "num_actors": 2}
    make_run("methods/sage", "fsl_sage", [0.5], 1.0, runtime={"backend": "inprocess"})
    make_run("methods/fedavg", "fedavg", [0.5], 1.0, runtime=ray)
    methods = load_runs(tmp_path / "methods")
    assert varying_keys(methods) == []
    assert [g.setting for g in group_runs(methods)] == ["", ""]

    make_run("layouts/one", "fsl_sage", [0.5], 1.0, runtime={"backend": "ray", "num_actors": 1})
    make_run("layouts/two", "fsl_sage", [0.5], 1.0, runtime=ray)
    layouts = load_runs(tmp_path / "layouts")
    assert varying_keys(layouts) == ["runtime.num_actors"]
    assert [g.setting for g in group_runs(layouts)] == ["num_actors = 1", "num_actors = 2"]
