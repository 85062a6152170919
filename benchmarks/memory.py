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
from dataclasses import asdict
from typing import Any

import ray

from fslsage_ray.runtime import session_memory as sm
from fslsage_ray.runtime.session_memory import ProcessMemory, StoreUsage

MIB = 2**20

__all__ = ["ProcessMemory", "StoreUsage", "process_memory", "session_pids", "session_sample"]


def _node() -> Any:
    node = ray._private.worker._global_node
    if node is None:
        raise RuntimeError("no local Ray node: call ray.init (not a ray:// client) first")
    return node


def worker_pids() -> set[int]:
    """PIDs of the workers (and drivers) the local raylet knows about."""
    node = _node()
    return sm.worker_pids(node.node_ip_address, node.node_manager_port)


def session_pids() -> set[int]:
    """This process, every process whose command line names this session's directory (GCS,
    raylet, agents, dashboard), the raylet's workers, and all their descendants."""
    return sm.session_pids(_node().get_session_dir_path(), {os.getpid()} | worker_pids())


def process_memory(pids, workers: set[int] | None = None) -> list[ProcessMemory]:
    """RSS, USS and PSS of each process still alive."""
    return sm.process_memory(pids, workers)


def store_usage() -> StoreUsage:
    """Object-store bytes of the local node, from the raylet."""
    node = _node()
    return sm.store_usage(node.node_ip_address, node.node_manager_port)


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
