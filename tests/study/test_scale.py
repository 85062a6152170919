"""`fslsage-ray scale`: a tiny study (digits, two counts, two methods, two seeds, one round)
gives one row per run with every measurement, a summary by method and count, figures that
`plot` redraws, and resumes a half-finished study; impossible studies are refused."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from fslsage_ray.cli import main
from fslsage_ray.config import ConfigError, load_config
from fslsage_ray.study.design import design_study, parse_counts

TINY = [
    "runtime.backend=inprocess",
    "run.rounds=1",
    "data.train_subset=200",
    "alignment.epochs=1",
]
COLUMNS = {
    "run",
    "method",
    "clients",
    "seed",
    "s_per_round",
    "first_round_s",
    "peak_memory_bytes",
    "peak_store_bytes",
    "client_actors",
    "clients_per_actor",
    "server_busy_frac",
    "gib_per_round",
    "final",
    "best",
}
FIGURES = ("time_vs_clients.png", "memory_vs_clients.png", "accuracy_vs_clients.png")


def test_tiny_study_table_summary_figures_and_resume(tmp_path, capsys):
    out = tmp_path / "study"
    args = ["scale", "--quiet", "--out", str(out), "--clients", "2,4"]
    args += ["--methods", "fsl_sage,fedavg", "--seeds", "200,201", *TINY]
    assert main(args) == 0
    rows = pq.read_table(out / "scaling.parquet").to_pylist()
    assert COLUMNS <= set(rows[0])
    assert [(r["clients"], r["method"], r["seed"]) for r in rows] == [
        (c, m, s) for c in (2, 4) for m in ("fsl_sage", "fedavg") for s in (200, 201)
    ]
    assert all(r["s_per_round"] > 0 and r["peak_memory_bytes"] > 2**20 for r in rows)
    assert all(0.0 <= r["final"] <= 1.0 and r["rounds"] == 1 for r in rows)
    summary = (out / "summary.md").read_text().splitlines()
    assert len(summary) == 2 + 4  # header, rule, one line per method and count
    assert summary[2].startswith("| FSL-SAGE | 2 | 2 |") and " ± " in summary[2]
    for name in FIGURES:
        assert (out / name).stat().st_size > 0, name

    # half-finished: the last run's row is lost; running again redoes that run only
    pq.write_table(pq.read_table(out / "scaling.parquet").slice(0, 7), out / "scaling.parquet")
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "[8/8] fedavg-n4-seed201" in printed and "[7/8]" not in printed
    again = pq.read_table(out / "scaling.parquet").to_pylist()
    assert [r["final"] for r in again] == [r["final"] for r in rows]  # same seed, same result

    redrawn = tmp_path / "redrawn"
    assert main(["plot", str(out), "--out", str(redrawn)]) == 0
    assert all((redrawn / name).stat().st_size > 0 for name in (*FIGURES, "summary.md"))


def test_a_study_with_other_settings_is_not_mixed_in(tmp_path, capsys):
    out = tmp_path / "s"
    (out).mkdir()
    (out / "study.json").write_text('{"runs": {}}')
    code = main(["scale", "--quiet", "--out", str(out), "--clients", "2", *TINY])
    assert code == 2 and "other settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: parse_counts("10,10"), "distinct >= 1 integers"),
        (lambda: parse_counts("0,5"), "distinct >= 1 integers"),
        (
            lambda: design_study(load_config(), ["fedavg"], [10, 1000], None, "per_client", 50),
            "1000 clients x 50 samples need 50000 training samples; digits has",
        ),
        (
            lambda: design_study(load_config(), ["fedavg"], [10], None, "per_client", None),
            "--samples-per-client",
        ),
        (
            lambda: design_study(load_config(), ["fedavg"], [10], None, "split", 5),
            "per_client only",
        ),
    ],
)
def test_impossible_studies_are_refused(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_per_client_gives_each_client_n_samples():
    runs = design_study(load_config(), ["fsl_sage"], [2, 8], [1], "per_client", 20)
    assert [(r.config.algorithm.num_clients, r.config.data.train_subset) for r in runs] == [
        (2, 40),
        (8, 160),
    ]


def test_a_missing_cifar_folder_is_refused_before_any_run(tmp_path, capsys):
    """CIFAR's size is known without decoding, but only a folder that holds it may skip the
    load: a wrong data_dir is refused in one line while planning, before Ray starts."""
    code = main(
        [
            "scale",
            "--quiet",
            "--config",
            "configs/cifar10/scale_cnn.yaml",
            "--clients",
            "10",
            "--data",
            "per_client",
            "--samples-per-client",
            "5",
            "--out",
            str(tmp_path / "study"),
            f"data.data_dir={tmp_path / 'nowhere'}",
            "data.download=false",
        ]
    )
    assert code == 2 and "cannot load cifar10" in capsys.readouterr().err
    assert not (tmp_path / "study").exists()


def test_the_study_reads_a_ray_backends_actor_layout() -> None:
    # The study's "actors x clients" column printed "in-process" for Ray runs after the
    # backend's `plan` attribute became `layout`: read the layout a RayBackend holds.
    from types import SimpleNamespace

    from fslsage_ray.runtime.placement import ActorLayout
    from fslsage_ray.study.measure import _layout

    layout = ActorLayout(((0, 1, 2), (3, 4)), {"CPU": 1.0}, {}, capacity=2)
    assert _layout(SimpleNamespace(layout=layout)) == (2, 3)
    assert _layout(SimpleNamespace()) == (0, 0)  # the in-process backend has none
