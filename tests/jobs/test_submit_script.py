"""jobs/submit.sh builds the right `ray job submit` command line (checked with a stub ray).

The script is what people copy into their cluster workflows; a quoting or ordering mistake
would submit the wrong command, so its argument handling is pinned down without a cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "jobs" / "submit.sh"
STUB = """#!/bin/sh
pwd > "$STUB_OUT"
for arg in "$@"; do printf '%s\\n' "$arg" >> "$STUB_OUT"; done
"""

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(tmp_path: Path, args: list[str], **env: str) -> tuple[int, list[str], str]:
    """(exit code, [cwd, *argv the stub ray saw], stderr)."""
    stub = tmp_path / "ray"
    stub.write_text(STUB)
    stub.chmod(0o755)
    record = tmp_path / "argv.txt"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    full_env.update({"RAY": str(stub), "STUB_OUT": str(record)}, **env)
    proc = subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=full_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    seen = record.read_text().splitlines() if record.exists() else []
    return proc.returncode, seen, proc.stderr


def _expected(address: str, *extra: str) -> list[str]:
    head = f"job submit --address {address} --working-dir . --runtime-env jobs/runtime_env.yaml"
    return [*head.split(), *extra, *"-- python -m fslsage_ray".split()]


def test_default_address_and_passthrough(tmp_path: Path) -> None:
    code, seen, _ = _run(tmp_path, ["--", "run", "--out", "/tmp/a b", "run.rounds=2"])
    assert code == 0
    assert seen[0] == str(REPO)  # submitted from the repo root, wherever it was called
    assert seen[1:] == [
        *_expected("http://127.0.0.1:8265"),
        "run",
        "--out",
        "/tmp/a b",
        "run.rounds=2",
    ]


@pytest.mark.parametrize(
    ("args", "env", "address"),
    [
        (["--address", "http://127.0.0.1:9000"], {}, "http://127.0.0.1:9000"),
        (["--address=http://127.0.0.1:9001"], {}, "http://127.0.0.1:9001"),
        ([], {"RAY_ADDRESS": "http://127.0.0.1:9002"}, "http://127.0.0.1:9002"),
        (
            [],
            {
                "RAY_API_SERVER_ADDRESS": "http://127.0.0.1:9003",
                "RAY_ADDRESS": "http://127.0.0.1:9002",
            },
            "http://127.0.0.1:9003",
        ),
        (["--address", "http://127.0.0.1:9004"], {"RAY_ADDRESS": "x"}, "http://127.0.0.1:9004"),
    ],
)
def test_address_precedence(
    tmp_path: Path, args: list[str], env: dict[str, str], address: str
) -> None:
    code, seen, _ = _run(tmp_path, [*args, "--", "plan"], **env)
    assert code == 0
    assert seen[1:] == [*_expected(address), "plan"]


def test_ray_options_go_before_the_separator(tmp_path: Path) -> None:
    code, seen, _ = _run(tmp_path, ["--no-wait", "--submission-id", "x1", "--", "plan"])
    assert code == 0
    assert seen[1:] == [
        *_expected("http://127.0.0.1:8265", "--no-wait", "--submission-id", "x1"),
        "plan",
    ]


@pytest.mark.parametrize("args", [[], ["--no-wait"], ["--"], ["--address"]])
def test_nothing_to_run_is_refused(tmp_path: Path, args: list[str]) -> None:
    code, seen, err = _run(tmp_path, args)
    assert code == 2
    assert seen == []  # ray was never called
    assert "jobs/submit.sh" in err  # the usage text
