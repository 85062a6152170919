"""The CLI refuses bad input with exit code 2 and one `error:` line, before any Ray work.

Users run this on shared clusters: a typo must cost them a second, not a Ray start-up,
a half-written run folder or a traceback to read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray

from fslsage_ray.cli import main

NO_PARQUET = [
    "data.name=parquet",
    "data.train_path=/nonexistent.parquet",
    "data.test_path=/nonexistent.parquet",
    "data.num_classes=10",
]
CIFAR_PLAN = [
    "data.name=cifar10",
    "model.name=resnet18",
    "algorithm.num_clients=10",
    "algorithm.batch_size=256",
    "algorithm.upload_every=5",
    "alignment.every=10",
]


RAY_INITS: list[tuple] = []  # every ray.init call of the current test


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No cluster to attach to, no telemetry, and a cwd where stray run folders would show;
    ray.init is watched (a Ray started and shut down again leaves no other trace)."""
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.chdir(tmp_path)
    real_init = ray.init

    def watched_init(*args: object, **kwargs: object) -> object:
        RAY_INITS.append(args)
        return real_init(*args, **kwargs)

    RAY_INITS.clear()
    monkeypatch.setattr(ray, "init", watched_init)


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    ray_before = ray.is_initialized()  # another test's session Ray may already be up
    code = main(argv)
    assert not RAY_INITS, "a refused command must not start Ray, even for a moment"
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]
    assert ray.is_initialized() == ray_before, "a refused command must not start Ray"
    return lines[0]


CASES = [
    # (subcommand args before the overrides, overrides, substrings of the error line)
    (["run", "--quiet"], ["algorithm.upload_evry=3"], ["algorithm.upload_evry", "did you mean"]),
    (["plan"], ["algorithm.upload_evry=3"], ["algorithm.upload_evry"]),
    (["info"], ["zzz.key=1"], ["zzz"]),
    (["run", "--quiet"], ["run.rounds=abc"], ["run.rounds", "expected int"]),
    (["run", "--quiet"], ["algorithm.upload_every=0"], ["algorithm.upload_every"]),
    (["run", "--quiet"], ["runtime.backend=dask"], ["runtime.backend"]),
    (["run", "--quiet"], ["run.rounds"], ["section.key=value"]),
    (["run", "--quiet"], NO_PARQUET, ["/nonexistent.parquet"]),
    (["plan"], NO_PARQUET, ["/nonexistent.parquet"]),
    (["run", "--quiet"], ["algorithm.num_clients=5000"], ["5000", "clients"]),
    (["plan"], ["algorithm.num_clients=5000"], ["5000", "clients"]),
    (["run", "--quiet"], ["model.name=vgg"], ["vgg"]),
    (["run", "--quiet"], ["model.aux=bogus"], ["bogus"]),
    (["run", "--quiet"], ["alignment.iteration0=first"], ["alignment.iteration0", "first"]),
    (["run", "--quiet"], ["run.authors_ledger=true"], ["authors", "model.name is 'cnn'"]),
    (["plan", "--ledger", "authors"], [], ["authors", "model.name is 'cnn'"]),
]


@pytest.mark.parametrize(("head", "overrides", "needles"), CASES, ids=lambda v: str(v)[:50])
def test_bad_input_refused(
    head: list[str],
    overrides: list[str],
    needles: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    extra = ["--out", str(out)] if head[0] == "run" else []
    _refused([*head, *extra, *overrides], capsys, *needles)
    assert not out.exists(), "a refused run must not create its run folder"
    assert not (tmp_path / "runs").exists()


def test_missing_config_file_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    _refused(["run", "--quiet", "--config", str(missing)], capsys, "nope.yaml")


def test_non_empty_out_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier work")
    _refused(["run", "--quiet", "--out", str(out)], capsys, str(out), "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "earlier work"


def test_plan_json_default(capsys: pytest.CaptureFixture[str]) -> None:
    ray_before = ray.is_initialized()
    assert main(["plan", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["algorithm"] == "fsl_sage"
    assert len(plan["rounds"]) == 20  # the quick start's run.rounds
    for t, row in enumerate(plan["rounds"]):
        assert row["round"] == t
        assert row["total"] == sum(row["bytes"].values()) > 0
    assert ray.is_initialized() == ray_before


def test_plan_cifar_does_not_decode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def _no_cifar(*args: object, **kwargs: object) -> None:
        raise AssertionError("plan must not read CIFAR")

    monkeypatch.setattr("fslsage_ray.data.sources.load_cifar", _no_cifar)
    assert main(["plan", "--json", "--rounds", "2", *CIFAR_PLAN]) == 0
    rounds = json.loads(capsys.readouterr().out)["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]
    assert rounds[0]["bytes"]["aux_model.down"] > 0  # round 0 aligns (t % l == 0)
    assert "aux_model.down" not in rounds[1]["bytes"]
    assert rounds[0]["total"] > rounds[1]["total"]


def test_negative_seed_refused(capsys: pytest.CaptureFixture[str]) -> None:
    _refused(["plan", "run.seed=-1"], capsys, "run.seed")


def test_unparsable_override_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    _refused(["plan", "run.rounds=[1"], capsys, "run.rounds")
