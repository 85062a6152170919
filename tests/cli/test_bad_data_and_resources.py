"""Bad data and impossible resources are refused with one clear line before any training."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fslsage_ray.cli import main


def _png(size: int, value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _table(path: Path, n: int = 40, size: int = 8, labels=None, image=None) -> Path:
    images = [image if image is not None else _png(size, i % 255) for i in range(n)]
    labels = labels if labels is not None else [i % 4 for i in range(n)]
    pq.write_table(pa.table({"image": images, "label": labels}), path)
    return path


def _parquet_args(train: Path, test: Path, classes: int = 4) -> list[str]:
    return [
        "data.name=parquet",
        f"data.train_path={train}",
        f"data.test_path={test}",
        f"data.num_classes={classes}",
        "algorithm.num_clients=2",
        "runtime.backend=inprocess",
    ]


def _refused(argv: list[str], capsys, *needles: str) -> None:
    code = main(["run", "--quiet", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_good_parquet_tables_train(tmp_path, capsys):
    """The control: the same builder with valid data runs, so each refusal below is real."""
    train, test = _table(tmp_path / "tr.parquet"), _table(tmp_path / "te.parquet", n=8)
    args = _parquet_args(train, test)
    assert main(["run", "--quiet", "--out", str(tmp_path / "ok"), *args, "run.rounds=1"]) == 0


@pytest.mark.parametrize(
    "make, needles",
    [
        (
            lambda d: (d / "tr.parquet").write_bytes(b"not parquet") and d / "tr.parquet",
            ["tr.parquet"],
        ),
        (lambda d: _table(d / "tr.parquet", labels=[7] * 40), ["label 7", "[0, 4)"]),
        (lambda d: _table(d / "tr.parquet", labels=[-1] * 40), ["label -1"]),
        (lambda d: _table(d / "tr.parquet", image=b"\x89PNG broken"), ["row 0"]),
        (lambda d: _table(d / "tr.parquet", size=10), ["10"]),  # cnn needs sizes % 4 == 0
    ],
    ids=["corrupt-file", "label-too-large", "negative-label", "corrupt-image", "bad-size"],
)
def test_bad_training_data_is_refused(tmp_path, capsys, make, needles):
    train = make(tmp_path)
    test = _table(tmp_path / "te.parquet", n=8)
    _refused(["--out", str(tmp_path / "out"), *_parquet_args(train, test)], capsys, *needles)
    assert not (tmp_path / "out").exists()


def test_train_and_test_images_of_different_sizes_are_refused(tmp_path, capsys):
    train = _table(tmp_path / "tr.parquet", size=8)
    test = _table(tmp_path / "te.parquet", n=8, size=12)
    _refused(["--out", str(tmp_path / "out"), *_parquet_args(train, test)], capsys, "12")


def test_missing_cifar_offline_names_both_ways_to_get_it(tmp_path, capsys):
    _refused(
        ["data.name=cifar10", f"data.data_dir={tmp_path}", "data.download=false"],
        capsys,
        "cifar10",
    )


@pytest.mark.ray
def test_resources_the_cluster_can_never_satisfy_are_an_error_not_a_pending_actor(
    tmp_path, capsys, ray_local
):
    _refused(
        ["--out", str(tmp_path / "out"), "runtime.actor_num_gpus=1"],
        capsys,
        "no client actor fits",
        "GPU",
    )
    _refused(
        ["--out", str(tmp_path / "out2"), "runtime.num_actors=50", "runtime.actor_num_cpus=1"],
        capsys,
        "room for",
    )
