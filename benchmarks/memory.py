"""Memory of the current Ray session, for benchmarks that look for leaks.

Two views, because a leak can hide in either: the memory of every process of the session
(driver, GCS, raylet, agents, workers) and the bytes held in the object store. RSS alone
counts the object-store pages that every zero-copy reader maps, so USS (private pages) and
PSS (shared pages split among their users) are recorded too; summed PSS is the honest total.

The object-store numbers come from the local raylet's GetNodeStats reply
(`ray._private.internal_api.node_stats`), which on Ray 2.60 also names every worker's PID.
`ray.available_resources()["object_store_memory"]` is a scheduling quantity that does not
move when objects are stored, and `memory_summary()` lists every object, so neither is used.
Everything here reads the local node only: run it on the driver's machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

import ray

MIB = 2**20


def _psutil() -> ModuleType:
    """psutil ships inside Ray (ray/thirdparty_files), importable only once ray is."""
    import psutil

    return psutil


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    name: str
    role: str  # driver | worker | system
    rss: int
    uss: int | None  # None where /proc/<pid>/smaps cannot be read
    pss: int | None


@dataclass(frozen=True)
class StoreUsage:
    bytes_used: int
    bytes_capacity: int
    primary_copy_bytes: int
    num_objects: int
    spilled_bytes_total: int
    created_bytes_total: int


def _node() -> Any:
    node = ray._private.worker._global_node
    if node is None:
        raise RuntimeError("no local Ray node: call ray.init (not a ray:// client) first")
    return node


def _node_stats(node: Any) -> Any:
    from ray._private.internal_api import node_stats

    return node_stats(node.node_ip_address, node.node_manager_port, include_memory_info=False)


def worker_pids() -> set[int]:
    """PIDs of the workers (and drivers) the local raylet knows about."""
    return {s.pid for s in _node_stats(_node()).core_workers_stats if s.pid}


def session_pids() -> set[int]:
    """This process, every process whose command line names this session's directory (GCS,
    raylet, agents, dashboard), the raylet's workers, and all their descendants."""
    psutil = _psutil()
    node = _node()
    marker = node.get_session_dir_path().rstrip("/")
    roots = {os.getpid()} | worker_pids()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        args = proc.info["cmdline"] or []
        if any(a.endswith(marker) or marker + "/" in a for a in args):
            roots.add(proc.info["pid"])
    pids = set(roots)
    for pid in roots:
        try:
            pids.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            continue  # ended while we looked
    return pids


def _role(pid: int, name: str, workers: set[int]) -> str:
    if pid == os.getpid():
        return "driver"
    if pid in workers:  # the agents are also named ray::..., but the raylet does not list them
        return "worker"
    return "system"


def process_memory(pids: Iterable[int], workers: set[int] | None = None) -> list[ProcessMemory]:
    """RSS, USS and PSS of each process still alive."""
    psutil = _psutil()
    workers = workers if workers is not None else set()
    out = []
    for pid in sorted(pids):
        try:
            proc = psutil.Process(pid)
            name = proc.name()
            try:
                full = proc.memory_full_info()
                rss, uss, pss = full.rss, full.uss, getattr(full, "pss", None)
            except psutil.AccessDenied:
                rss, uss, pss = proc.memory_info().rss, None, None
        except psutil.Error:
            continue  # ended while we looked
        out.append(ProcessMemory(pid, name, _role(pid, name, workers), rss, uss, pss))
    return out


def store_usage() -> StoreUsage:
    """Object-store bytes of the local node, from the raylet."""
    stats = _node_stats(_node()).store_stats
    return StoreUsage(
        bytes_used=int(stats.object_store_bytes_used),
        bytes_capacity=int(stats.object_store_bytes_avail),
        primary_copy_bytes=int(stats.object_store_bytes_primary_copy),
        num_objects=int(stats.num_local_objects),
        spilled_bytes_total=int(stats.spilled_bytes_total),
        created_bytes_total=int(stats.cumulative_created_bytes),
    )


def _total(procs: list[ProcessMemory], field: str, role: str | None = None) -> int:
    return sum(getattr(p, field) or 0 for p in procs if role is None or p.role == role)


def session_sample() -> dict[str, Any]:
    """One flat record: totals per role and kind, the store, and every process."""
    workers = worker_pids()
    procs = process_memory(session_pids(), workers)
    store = store_usage()
    return {
        "num_processes": len(procs),
        "driver_rss": _total(procs, "rss", "driver"),
        "ray_rss": _total(procs, "rss"),
        "ray_uss": _total(procs, "uss"),
        "ray_pss": _total(procs, "pss"),
        "workers_rss": _total(procs, "rss", "worker"),
        "workers_uss": _total(procs, "uss", "worker"),
        "system_rss": _total(procs, "rss", "system"),
        "store_bytes_used": store.bytes_used,
        "store_primary_bytes": store.primary_copy_bytes,
        "store_num_objects": store.num_objects,
        "store": asdict(store),
        "processes": [asdict(p) for p in procs],
    }
