"""Running a jobs/ shell script the way a bare borrowed machine would: a minimal environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Issue 12's GPU setting shrunk for 2 cores: two client actors, tiny subsets and buffers.
SHRINK_FAST = (
    "data.train_subset=200 data.test_subset=100 algorithm.batch_size=32 alignment.epochs=2 "
    "alignment.buffer_size=32 runtime.num_actors=2"
)


def run_script(
    name: str, args: list[str], tmp_path: Path, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess:
    """jobs/`name` with `args` and then this interpreter; HOME and the runs under tmp_path."""
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "RUNS_DIR": str(tmp_path / "runs"),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    return subprocess.run(
        ["bash", str(REPO / "jobs" / name), *args, sys.executable],
        cwd=REPO,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
