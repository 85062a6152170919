"""A clean stop: SIGTERM (`ray job stop`, a preempted node) and SIGINT (Ctrl-C) sent to a real
run in a subprocess print one line at once and exit 143/130; `--resume` then continues it to
exactly the metrics of a run that never stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from run_helpers import SMALL, assert_same_learning, run_small

from fslsage_ray.cli import main
from fslsage_ray.outputs.checkpoint import CHECKPOINT_FILE
from fslsage_ray.outputs.metrics import read_metrics

REPO = Path(__file__).resolve().parents[2]
REFERENCE_ROUNDS = 6
STARTUP_S = 300  # a private Ray and its actors on two busy cores


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[dict]:
    """One uninterrupted run (the in-process backend gives Ray's metrics: test_determinism)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    return run_small(out, "runtime.backend=inprocess", f"run.rounds={REFERENCE_ROUNDS}")


def start_run(out: Path, backend: str) -> subprocess.Popen:
    """`fslsage-ray run` as a user starts it, with more rounds than it will get to run."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "fslsage_ray", "run", "--quiet", "--out", str(out)]
    overrides = [*SMALL, "run.checkpoint_every=1", "run.rounds=1000", f"runtime.backend={backend}"]
    overrides.append("runtime.num_actors=1")  # Ray: one client actor and the server, to start fast
    return subprocess.Popen(
        command + overrides,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_checkpoint(proc: subprocess.Popen, out: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while not (out / CHECKPOINT_FILE).exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before its first checkpoint: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no checkpoint after {STARTUP_S}s")
        time.sleep(0.05)


def stop_line(proc: subprocess.Popen, sig: signal.Signals) -> tuple[str, float]:
    """Send the signal; the "stopped by" line and how many seconds it took to appear."""
    sent = time.monotonic()
    proc.send_signal(sig)
    for line in proc.stderr:
        if line.startswith("stopped by"):
            return line.strip(), time.monotonic() - sent
    pytest.fail(f"no 'stopped by' line; exit {proc.wait()}, stdout {proc.stdout.read()!r}")


@pytest.mark.parametrize(
    "sig, backend, exit_code",
    [
        pytest.param(signal.SIGTERM, "ray", 143, marks=pytest.mark.ray),
        (signal.SIGINT, "inprocess", 130),
    ],
)
def test_a_signal_stops_the_run_and_resume_gives_identical_metrics(
    tmp_path, reference, sig, backend, exit_code
):
    out = tmp_path / "run"
    proc = start_run(out, backend)
    wait_for_checkpoint(proc, out)
    line, seconds = stop_line(proc, sig)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == exit_code, rest
    assert seconds < 2.0, f"the line took {seconds:.1f}s"
    assert "Traceback" not in rest, rest
    assert line.startswith(f"stopped by {sig.name} in round "), line
    assert f"run folder {out};" in line
    assert line.endswith(f"continue with: fslsage-ray run --resume {out}"), line
    saved, redo = map(
        int, re.search(r"round (\d+), (\d+) completed rounds? to redo", line).groups()
    )
    assert redo in (0, 1)  # a checkpoint every round: at most the one being saved is lost
    assert read_metrics(out).num_rows >= saved + 1

    rounds = saved + 2  # at least one round trained after resuming
    assert rounds <= REFERENCE_ROUNDS, f"stopped too late ({line})"
    # In this process, without Ray: the runtime may change on resume, the results may not.
    resume = ["run", "--quiet", "--resume", str(out), f"run.rounds={rounds}", "--backend=inprocess"]
    assert main(resume) == 0
    assert_same_learning(reference[:rounds], read_metrics(out).to_pylist())
