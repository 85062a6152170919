"""The private Ray that `connect` starts is safe without any help from the caller.

Safe means: every socket of that Ray session listens on loopback only, no dashboard web
server unless asked (and then on 127.0.0.1), usage statistics off. The Ray checks run in a
fresh subprocess whose environment lacks RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER and RAY_ADDRESS,
so they prove that the tool itself, not the test set-up, makes Ray local-only.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fslsage_ray.config.schema import RuntimeConfig
from fslsage_ray.runtime import cluster

REPORT_MARK = "SAFE-DEFAULTS-REPORT "
REFUSED_EXIT = 3
DASHBOARD_PORT = 8265
PROBE_TIMEOUT_S = 150

# Runs in the subprocess. The tool is imported before ray, as a user's script would. If Ray
# is about to start a node whose address it would pick from the network (its local-only
# switch, read once when ray is imported, is still off), the probe refuses to start it: such a
# Ray would listen on, and send to, the machine's public address.
PROBE = r"""
import json, os, sys

from fslsage_ray.config.schema import RuntimeConfig
from fslsage_ray.runtime.cluster import connect

import ray
import ray._private.ray_constants as ray_constants

_real_init = ray.init


def _guarded_init(*args, **kwargs):
    if not kwargs.get("address") and ray_constants.ENABLE_RAY_CLUSTER:
        print(json.dumps({"refused": (
            "ray.init would start a node with ray._private.ray_constants.ENABLE_RAY_CLUSTER "
            "= True (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER is %r now, but Ray reads it once, when "
            "ray is first imported), so the node's address would be the machine's network "
            "address, not 127.0.0.1"
        ) % os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}), flush=True)
        sys.exit(REFUSED_EXIT)
    return _real_init(*args, **kwargs)


ray.init = _guarded_init
started = connect(RuntimeConfig(dashboard=DASHBOARD))

import psutil  # vendored by ray; importable once ray is


@ray.remote
def _pid():
    return os.getpid()


worker_pid = ray.get(_pid.remote(), timeout=120)  # a worker process joins the session
me = psutil.Process()
pids = {me.pid} | {p.pid for p in me.children(recursive=True)}
listening = []
for conn in psutil.net_connections(kind="tcp"):
    if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
        try:
            name = psutil.Process(conn.pid).name()
        except psutil.Error:
            name = "?"
        listening.append({"ip": conn.laddr.ip, "port": conn.laddr.port, "pid": conn.pid,
                          "name": name})
child_usage_env = set()  # processes renamed by setproctitle may show an empty environment
for pid in pids - {me.pid}:
    try:
        value = psutil.Process(pid).environ().get("RAY_USAGE_STATS_ENABLED")
    except psutil.Error:
        continue
    if value is not None:
        child_usage_env.add(value)
try:
    from ray._common.usage import usage_lib
except ImportError:  # older Ray
    from ray._private.usage import usage_lib
node = ray._private.worker._global_node
report = {
    "started": started,
    "worker_pid": worker_pid,
    "pids": sorted(pids),
    "listening": listening,
    "usage_env": os.environ.get("RAY_USAGE_STATS_ENABLED"),
    "usage_stats_enabled": usage_lib.usage_stats_enabled(),
    "child_usage_env": sorted(child_usage_env),
    "node_ip": node.node_ip_address,
    "webui_url": node.webui_url,
    "session_dir": node.get_session_dir_path(),
}
print(REPORT_MARK + json.dumps(report), flush=True)
ray.shutdown()
"""


def _probe_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # the tool must set it itself
    env.pop("RAY_ADDRESS", None)  # else connect would attach instead of starting Ray
    # Kept at 0 so that no run of this test can ever report usage; the pure test below
    # proves that connect sets it when it is absent.
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def _run_probe(tmp_path: Path, dashboard: bool) -> dict:
    """Start the tool's private Ray in a fresh process; return what that process saw."""
    source = (
        f"REPORT_MARK = {REPORT_MARK!r}\nREFUSED_EXIT = {REFUSED_EXIT}\n"
        f"DASHBOARD = {dashboard}\n{PROBE}"
    )
    proc = subprocess.run(
        [sys.executable, "-c", source],
        env=_probe_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_S,
    )
    if proc.returncode == REFUSED_EXIT:
        refused = json.loads(proc.stdout.strip().splitlines()[-1])["refused"]
        pytest.fail(f"connect() is not loopback-only by itself: {refused}")
    lines = [x for x in proc.stdout.splitlines() if x.startswith(REPORT_MARK)]
    assert proc.returncode == 0 and lines, (
        f"probe failed (exit {proc.returncode})\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return json.loads(lines[-1][len(REPORT_MARK) :])


def _is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if addr.version == 6 and addr.ipv4_mapped is not None:  # ::ffff:127.0.0.1
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _check_loopback_only(report: dict) -> None:
    listening = report["listening"]
    assert listening, "no listening socket found for the session: the probe saw nothing"
    assert report["worker_pid"] in report["pids"], "the worker is not a child of this session"
    exposed = [s for s in listening if not _is_loopback(s["ip"])]
    assert not exposed, f"sockets open beyond loopback: {exposed}"
    assert _is_loopback(report["node_ip"]), report["node_ip"]


@pytest.mark.ray
def test_private_ray_listens_on_loopback_only_without_dashboard_or_usage_stats(tmp_path):
    report = _run_probe(tmp_path, dashboard=False)
    assert report["started"] is True
    _check_loopback_only(report)
    on_dashboard_port = [s for s in report["listening"] if s["port"] == DASHBOARD_PORT]
    assert not on_dashboard_port, f"dashboard is on by default: {on_dashboard_port}"
    assert not report["webui_url"], f"dashboard URL advertised: {report['webui_url']}"
    assert report["usage_env"] == "0"
    assert report["usage_stats_enabled"] is False
    assert report["child_usage_env"] == ["0"], report["child_usage_env"]


@pytest.mark.ray
def test_dashboard_when_asked_binds_to_loopback_only(tmp_path):
    report = _run_probe(tmp_path, dashboard=True)
    if not report["webui_url"]:
        log = Path(report["session_dir"]) / "logs" / "dashboard.err"
        tail = log.read_text()[-500:] if log.is_file() else "no dashboard.err"
        pytest.skip(f"the Ray dashboard could not start on this machine: {tail}")
    _check_loopback_only(report)
    host, port = report["webui_url"].rsplit(":", 1)
    assert _is_loopback(host.strip("[]")), report["webui_url"]
    web = [s for s in report["listening"] if s["port"] == int(port)]
    assert web, f"nothing of this session listens on the dashboard port {port}"
    assert all(_is_loopback(s["ip"]) for s in web), web


# --- pure checks: ray.init is replaced, no Ray starts ------------------------------------


@pytest.fixture
def init_calls(monkeypatch) -> list[dict]:
    import ray

    calls: list[dict] = []
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: calls.append(kwargs))
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    for name in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED"):
        monkeypatch.setenv(name, "")  # recorded, so whatever connect sets is undone after
        monkeypatch.delenv(name)
    return calls


def test_a_named_address_is_attached_to_not_started(init_calls):
    started = cluster.connect(RuntimeConfig(address="127.0.0.1:6379"))
    assert started is False
    assert len(init_calls) == 1
    assert init_calls[0]["address"] == "127.0.0.1:6379"
    assert "num_cpus" not in init_calls[0] and "num_gpus" not in init_calls[0]
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ  # a real cluster keeps its IPs
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"


def test_ray_address_from_the_environment_is_attached_to(init_calls, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6380")
    assert cluster.connect(RuntimeConfig()) is False
    assert init_calls[0]["address"] == "127.0.0.1:6380"
    assert "num_cpus" not in init_calls[0]
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ


def test_a_private_ray_is_asked_for_no_dashboard_and_no_usage_stats(init_calls):
    assert cluster.connect(RuntimeConfig()) is True
    kwargs = init_calls[0]
    assert kwargs["address"] == "local"  # a new private instance, never a `ray start` one
    assert kwargs["include_dashboard"] is False
    assert kwargs["dashboard_host"] == "127.0.0.1"
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"  # set by connect: it was absent
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"


@pytest.mark.parametrize(
    ("ip", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.2", False),
        ("fe80::1%eth0", False),
    ],
)
def test_the_loopback_check_refuses_wildcard_and_network_addresses(ip, loopback):
    assert _is_loopback(ip) is loopback
