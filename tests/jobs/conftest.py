"""A real, private Ray head on 127.0.0.1 for job tests, stopped by process id afterwards.

`ray stop` kills every Ray process on the machine, including other people's clusters, so
the head is started in its own session and only that process group (plus stragglers whose
command line names this head's temp dir) is terminated.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PORT_FLAGS = (
    "--port",
    "--dashboard-port",
    "--ray-client-server-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
    "--node-manager-port",
    "--object-manager-port",
)


@dataclass(frozen=True)
class LocalHead:
    dashboard: str  # http://127.0.0.1:PORT, the job API
    temp_dir: Path
    env: dict[str, str]  # what every `ray ...` command against this head should use

    def ray(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "ray"), *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _free_ports(n: int) -> list[int]:
    """Distinct loopback ports, all held until every one is chosen."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def head_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # never attach to someone else's cluster
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # the job's `python` is ours
    env["RAY_AUTH_MODE"] = "disabled"  # loopback only, nothing else can reach it
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def _our_pids(pgid: int, markers: list[str]) -> list[int]:
    """Live processes in our process group, or whose command line names one of our dirs."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        state, _ppid, group = stat.rsplit(")", 1)[1].split()[:3]
        if state == "Z":
            continue
        if int(group) == pgid or any(m in cmdline for m in markers):
            pids.append(int(entry.name))
    return pids


def stop_head(pgid: int, markers: list[str], grace_s: float = 2.0) -> None:
    """SIGTERM our processes, then SIGKILL whatever is left after the grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 5.0)
        for pid in _our_pids(pgid, markers):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        while _our_pids(pgid, markers) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _our_pids(pgid, markers):
            return


@pytest.fixture
def local_ray_head(tmp_path: Path) -> Iterator[LocalHead]:
    if not sys.platform.startswith("linux"):
        pytest.skip("stopping the head by process group needs Linux /proc")
    if not (BIN / "ray").exists():
        pytest.skip(f"no ray executable next to {sys.executable}")
    temp_dir = Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))  # short: socket paths
    ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS)), strict=True))
    cmd = [str(BIN / "ray"), "start", "--head", "--num-cpus=2", "--num-gpus=0"]
    cmd += ["--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1"]
    cmd += ["--include-dashboard=true", f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    cmd += [f"{flag}={port}" for flag, port in ports.items()]
    env = head_env()
    # A new session: every daemon `ray start` launches inherits this process group id.
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    pgid = proc.pid
    markers = [str(temp_dir), str(tmp_path)]
    try:
        out, _ = proc.communicate(timeout=60)
        if proc.returncode != 0:
            pytest.fail(f"ray start failed ({proc.returncode}):\n{out.decode(errors='replace')}")
        dashboard = f"http://127.0.0.1:{ports['--dashboard-port']}"
        yield LocalHead(dashboard, temp_dir, env)
    finally:
        if proc.poll() is None:
            proc.kill()
        stop_head(pgid, markers)
        shutil.rmtree(temp_dir, ignore_errors=True)
