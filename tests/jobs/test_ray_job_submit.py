"""End to end on a real cluster: `ray job submit` of the quick start, results on disk.

This is how the simulator is meant to run on a cluster, and the path that breaks silently
(working_dir upload, attaching via RAY_ADDRESS, where outputs land), so it runs for real.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from ray.job_submission import JobStatus, JobSubmissionClient
from ray.util.state import list_actors

REPO = Path(__file__).resolve().parents[2]
SUBMIT_TIMEOUT_S = 240


def _submit(head: Any, submission_id: str, out: Path) -> subprocess.CompletedProcess[str]:
    """Submit and wait (ray job submit tails the logs until the job ends)."""
    args = ["job", "submit", "--address", head.dashboard, "--submission-id", submission_id]
    args += ["--working-dir", str(REPO), "--runtime-env", str(REPO / "jobs/runtime_env.yaml")]
    args += ["--", "python", "-m", "fslsage_ray", "run", "--quiet", "--out", str(out)]
    args += ["run.rounds=2"]
    try:
        return head.ray(*args, timeout=SUBMIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        head.ray("job", "stop", "--address", head.dashboard, submission_id, timeout=30)
        raise


def _uploaded_dirs(head: Any) -> list[Path]:
    """Where the cluster unpacked working_dir uploads (Ray's runtime_resources cache)."""
    return [
        p for p in head.temp_dir.glob("session_*/runtime_resources/**/_ray_pkg_*") if p.is_dir()
    ]


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.ray
def test_quickstart_job_succeeds(local_ray_head: Any, tmp_path: Path) -> None:
    head = local_ray_head
    out = tmp_path / "out"
    submission_id = f"fslsage-test-{uuid.uuid4().hex[:8]}"
    submit = _submit(head, submission_id, out)
    status = JobSubmissionClient(head.dashboard).get_job_status(submission_id)
    if status != JobStatus.SUCCEEDED:
        logs = head.ray("job", "logs", "--address", head.dashboard, submission_id, timeout=30)
        pytest.fail(
            f"job ended {status}, `ray job submit` exit code {submit.returncode}\n"
            f"--- submit ---\n{submit.stdout}{submit.stderr}\n"
            f"--- logs ---\n{logs.stdout}{logs.stderr}"
        )
    assert submit.returncode == 0

    table = pq.read_table(out / "metrics.parquet")
    assert table.num_rows == 2
    assert table.column("round").to_pylist() == [0, 1]
    assert table.column("test_acc").to_pylist()[-1] > 0.3  # chance is 0.1 on 10 digits
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["run"]["rounds"] == 2
    assert saved["data"]["name"] == "digits"
    assert saved["algorithm"]["num_clients"] == 10

    # The driver attached to this cluster (RAY_ADDRESS) rather than starting a private Ray.
    actors = {a.class_name for a in list_actors(address=head.dashboard, limit=1000)}
    assert {"ServerActor", "ClientActor"} <= actors, actors

    uploads = _uploaded_dirs(head)
    assert uploads, "no unpacked working_dir found on the cluster"
    for folder in uploads:
        assert (folder / "fslsage_ray" / "cli.py").is_file()
        assert not (folder / ".venv").exists() and not (folder / "runs").exists()
        assert _size(folder) < 20 * 2**20, f"working_dir upload is {_size(folder)} bytes"
