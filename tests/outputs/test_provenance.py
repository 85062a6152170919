"""provenance.json: what produced a run folder, appended at every start; a resume refuses
data files that changed since (unless told otherwise)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fslsage_ray.cli import main
from fslsage_ray.outputs.provenance import file_sha256, read_provenance


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _table(path: Path, n: int, row_group: int | None = None) -> Path:
    table = pa.table(
        {"image": [_png(i % 251) for i in range(n)], "label": [i % 4 for i in range(n)]}
    )
    pq.write_table(table, path, row_group_size=row_group)
    return path


def _args(tmp_path: Path) -> list[str]:
    train, test = _table(tmp_path / "tr.parquet", 40), _table(tmp_path / "te.parquet", 8)
    return [
        "data.name=parquet",
        f"data.train_path={train}",
        f"data.test_path={test}",
        "data.num_classes=4",
        "algorithm.num_clients=2",
        "algorithm.batch_size=8",
        "runtime.backend=inprocess",
        "run.checkpoint_every=1",
        "run.rounds=1",
    ]


def test_a_run_says_what_produced_it_and_a_resume_adds_an_entry(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--quiet", "--out", str(out), *_args(tmp_path)]) == 0
    (entry,) = read_provenance(out)
    assert entry["seed"] == 200
    assert entry["versions"]["torch"] and entry["versions"]["ray"]
    assert entry["versions"]["fslsage-ray"] == "0.1.0"
    assert "git_commit" in entry["source"] or "source_sha256" in entry["source"]
    assert entry["machine"]["cores"] >= 1 and entry["machine"]["cpu"]
    assert entry["backend"].startswith("in-process")
    train = str((tmp_path / "tr.parquet").resolve())
    assert entry["data_sha256"][train] == hashlib.sha256(Path(train).read_bytes()).hexdigest()
    assert main(["run", "--quiet", "--resume", str(out), "run.rounds=2"]) == 0
    assert len(read_provenance(out)) == 2  # appended, not overwritten


def test_resume_refuses_changed_data_unless_told(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--quiet", "--out", str(out), *_args(tmp_path)]) == 0
    _table(tmp_path / "te.parquet", 8, row_group=3)  # same rows, other bytes
    capsys.readouterr()
    assert main(["run", "--quiet", "--resume", str(out), "run.rounds=2"]) == 2
    err = capsys.readouterr().err
    assert "data files differ" in err and "te.parquet" in err and "--allow-data-change" in err
    assert len(err.strip().splitlines()) == 1
    argv = ["run", "--quiet", "--resume", str(out), "--allow-data-change", "run.rounds=2"]
    assert main(argv) == 0
    assert len(read_provenance(out)) == 2


def test_file_hashes_are_cached_by_path_size_and_mtime(tmp_path):
    data = tmp_path / "f.bin"
    data.write_bytes(b"abc")
    cache = tmp_path / "cache.json"
    want = hashlib.sha256(b"abc").hexdigest()
    assert file_sha256(data, cache) == want
    (key,) = json.loads(cache.read_text())
    cache.write_text(json.dumps({key: "remembered"}))
    assert file_sha256(data, cache) == "remembered"  # not read again
    data.write_bytes(b"abcd")  # new size: hashed afresh
    assert file_sha256(data, cache) == hashlib.sha256(b"abcd").hexdigest()


def test_compare_writes_provenance_for_the_study(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "cmp"
    argv = ["compare", "--quiet", "--methods", "fedavg", "--out", str(out)]
    assert main([*argv, *_args(tmp_path)]) == 0
    assert read_provenance(out)[0]["backend"] == "compare: fedavg"
    assert len(read_provenance(out / "fedavg")) == 1
