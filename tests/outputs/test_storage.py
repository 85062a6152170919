"""Outputs on storage URIs: a run written to file:// and to s3:// (a real S3-compatible server,
moto's, on 127.0.0.1), resumed from there, plotted and compared there, with no credentials
saved. gs:// and hdfs:// take the same path through pyarrow.fs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from moto.server import ThreadedMotoServer

from fslsage_ray.cli import main
from fslsage_ray.config import load_config
from fslsage_ray.outputs import storage
from fslsage_ray.outputs.metrics import learned as learning
from fslsage_ray.outputs.run_dir import default_run_dir

TINY = [
    "runtime.backend=inprocess",
    "algorithm.num_clients=3",
    "data.train_subset=300",
    "data.test_subset=100",
    "alignment.epochs=2",
    "run.checkpoint_every=1",
]
RUN_FILES = {"config.yaml", "metrics.parquet", "run.log", "checkpoint.pt", "provenance.json"}
SECRET = "not-to-be-saved-4711"


def read_table(uri: str) -> list[dict]:
    fs, path = storage.filesystem(uri)
    return pq.read_table(path, filesystem=fs).to_pylist()


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> list[dict]:
    """Three rounds without a stop, in a local folder: what every resumed run must equal."""
    out = tmp_path_factory.mktemp("straight") / "run"
    assert main(["run", "--quiet", "--out", str(out), *TINY, "run.rounds=3"]) == 0
    return learning(pq.read_table(out / "metrics.parquet").to_pylist())


def write_resume_plot(uri: str, straight: list[dict]) -> None:
    """Two rounds to the URI, resumed from it to three, then plotted into it."""
    assert main(["run", "--quiet", "--out", uri, *TINY, "run.rounds=2"]) == 0
    assert RUN_FILES <= set(storage.files_under(uri))
    assert len(read_table(storage.join(uri, "metrics.parquet"))) == 2
    assert main(["run", "--quiet", "--resume", uri, "run.rounds=3"]) == 0
    assert learning(read_table(storage.join(uri, "metrics.parquet"))) == straight
    # the participants' states of the last checkpoint only: earlier rounds' files are deleted
    states = [name for name in storage.files_under(uri) if name.startswith("checkpoint_states")]
    assert states == ["checkpoint_states-r2.bin"]
    assert main(["plot", uri]) == 0
    assert {"summary.md", "accuracy_vs_gib.png"} <= set(storage.files_under(uri))


def test_a_file_uri_run_is_written_resumed_and_plotted(tmp_path, straight):
    write_resume_plot(f"file://{tmp_path}/run", straight)
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """A real S3 server on loopback with one bucket; credentials only in the environment."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        fs, _ = pafs.FileSystem.from_uri("s3://bucket?allow_bucket_creation=true")
        fs.create_dir("bucket")
        yield "s3://bucket"
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def test_an_s3_run_is_written_resumed_plotted_and_compared(s3, straight, capsys):
    run = f"{s3}/run"
    write_resume_plot(run, straight)
    for name in ("config.yaml", "provenance.json", "run.log"):
        assert SECRET not in storage.read_bytes(storage.join(run, name)).decode()

    cmp = f"{s3}/cmp"
    methods = ["--methods", "fsl_sage,fedavg"]
    assert main(["compare", "--quiet", "--out", cmp, *methods, *TINY, "run.rounds=1"]) == 0
    files = set(storage.files_under(cmp))
    assert {"comparison.parquet", "summary.md", "fedavg/metrics.parquet"} <= files
    assert f"combined table: {cmp}/comparison.parquet" in capsys.readouterr().out


def test_the_endpoint_may_ride_in_the_uri_query(s3, capsys):
    """Options in the query (not secrets) stay with every file's URI and the resume command."""
    endpoint = os.environ["AWS_ENDPOINT_URL"].removeprefix("http://")
    run = f"{s3}/query-run?endpoint_override={endpoint}&scheme=http"
    assert main(["run", "--quiet", "--out", run, *TINY, "run.rounds=1"]) == 0
    assert "metrics.parquet" in storage.files_under(run)
    assert (
        f"metrics in {s3}/query-run/metrics.parquet?endpoint_override=" in capsys.readouterr().out
    )


def test_credentials_in_a_uri_are_refused_before_work(capsys):
    assert main(["run", "--out", "s3://KEY:hunter2@bucket/run", *TINY]) == 2
    err = capsys.readouterr().err
    assert "keep credentials out of the URI" in err and "hunter2" not in err


def test_paths_inside_a_uri_keep_its_query_and_run_out_dir_may_be_a_uri():
    uri = "s3://bucket/run?endpoint_override=127.0.0.1:9000&scheme=http"
    inside = "s3://bucket/run/metrics.parquet?endpoint_override=127.0.0.1:9000&scheme=http"
    assert storage.join(uri, "metrics.parquet") == inside
    assert storage.name_of(uri) == "run"
    assert storage.join("runs", "a") == Path("runs/a")
    config = load_config(None, ["run.out_dir=gs://bucket/runs", "run.name=x"])
    assert str(default_run_dir(config)).startswith("gs://bucket/runs/x-")


def test_a_mirror_uploads_in_chunks_the_checkpoint_last_and_removes_stale_files(tmp_path):
    uri = f"file://{tmp_path}/remote"
    mirror = storage.Mirror(uri)
    try:
        big = os.urandom(3 * storage.COPY_CHUNK + 5)  # more than one chunk each way
        (mirror.local / "checkpoint_states-r0.bin").write_bytes(big)
        (mirror.local / "checkpoint.pt").write_bytes(b"names r0")
        (mirror.local / "z.log").write_bytes(b"log")
        assert mirror.sync(last=("checkpoint.pt",)) == [
            "checkpoint_states-r0.bin",
            "z.log",
            "checkpoint.pt",
        ]
        assert (tmp_path / "remote" / "checkpoint_states-r0.bin").read_bytes() == big
        mirror.remove("checkpoint_states-r0.bin")
        assert sorted(storage.files_under(uri)) == ["checkpoint.pt", "z.log"]
        assert not (mirror.local / "checkpoint_states-r0.bin").exists()
        again = tmp_path / "again"
        storage.download(uri, again)
        assert (again / "checkpoint.pt").read_bytes() == b"names r0"
    finally:
        mirror.close()
