"""Memory of a whole Ray session: summed USS over its processes on every host, and the object
store, sampled while a run trains.

A run on Ray is many processes (driver, GCS, raylet, agents, workers) on one or more hosts.
One small sampler per host (a zero-CPU actor pinned to a node there) sums USS, the pages only
that process maps, so nothing is counted twice, over the processes whose command line names
the session's directory, their descendants and, on the driver's host, the driver. Per host,
not per node: several Ray nodes on one machine (ray.cluster_utils) share its processes. The
samplers leave themselves out. The session's peak is the sum of the hosts' peaks (exact on
one host; an upper bound across hosts, whose peaks need not coincide).

Reading USS walks a process's page tables (/proc/<pid>/smaps_rollup, about 0.1 s per big
process), so sampling costs CPU: every `every` seconds, and the cost is reported.
The object-store numbers come from each raylet's GetNodeStats reply, which also names the
PIDs of its workers. Without Ray (the in-process backend) the same sampler reads this process.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


def _psutil() -> Any:
    """psutil, installed on its own or the copy Ray ships (importable once ray is)."""
    try:
        return importlib.import_module("psutil")
    except ImportError:
        importlib.import_module("ray")  # puts ray/thirdparty_files on sys.path
        return importlib.import_module("psutil")


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


def node_stats(ip: str, port: int) -> Any:
    """A raylet's GetNodeStats reply (workers' PIDs, object-store figures)."""
    from ray._private.internal_api import node_stats as _stats

    return _stats(ip, port, include_memory_info=False)


def worker_pids(ip: str, port: int) -> set[int]:
    """PIDs of the workers (and drivers) a raylet knows about."""
    return {s.pid for s in node_stats(ip, port).core_workers_stats if s.pid}


def store_usage(ip: str, port: int) -> StoreUsage:
    """Object-store bytes of one node, from its raylet."""
    stats = node_stats(ip, port).store_stats
    return StoreUsage(
        bytes_used=int(stats.object_store_bytes_used),
        bytes_capacity=int(stats.object_store_bytes_avail),
        primary_copy_bytes=int(stats.object_store_bytes_primary_copy),
        num_objects=int(stats.num_local_objects),
        spilled_bytes_total=int(stats.spilled_bytes_total),
        created_bytes_total=int(stats.cumulative_created_bytes),
    )


def session_pids(marker: str, roots: Iterable[int] = ()) -> set[int]:
    """The given PIDs, every process whose command line names the session directory
    `marker` (GCS, raylet, agents, dashboard), and all their descendants, on this host."""
    psutil = _psutil()
    marker = marker.rstrip("/")
    found = set(roots)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        args = proc.info["cmdline"] or []
        if any(a.endswith(marker) or marker + "/" in a for a in args):
            found.add(proc.info["pid"])
    pids = set(found)
    for pid in found:
        try:
            pids.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            continue  # ended while we looked
    return pids


def process_memory(
    pids: Iterable[int], workers: set[int] | None = None, driver: int | None = None
) -> list[ProcessMemory]:
    """RSS, USS and PSS of each process still alive."""
    psutil = _psutil()
    workers = workers or set()
    driver = os.getpid() if driver is None else driver
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
        role = "driver" if pid == driver else "worker" if pid in workers else "system"
        out.append(ProcessMemory(pid, name, role, rss, uss, pss))
    return out


@dataclass
class Peaks:
    """What one sampler saw since it was last reset, in bytes."""

    uss: int = 0  # summed USS (RSS for a process whose USS could not be read)
    store: int = 0  # object-store bytes in use, summed over the host's nodes
    processes: int = 0
    samples: int = 0
    uss_complete: bool = True
    cost_s: float = 0.0

    def add(self, other: Peaks) -> Peaks:
        return Peaks(
            self.uss + other.uss,
            self.store + other.store,
            self.processes + other.processes,
            min(self.samples, other.samples) if self.samples else other.samples,
            self.uss_complete and other.uss_complete,
            self.cost_s + other.cost_s,
        )


class HostSampler:
    """Samples one host's share of the session on a thread every `every` seconds.

    marker: the session directory (None: no Ray, only `roots`); nodes: (ip, port) of the
    raylets on this host; roots: extra PIDs (the driver, on its host).
    """

    def __init__(
        self,
        marker: str | None,
        nodes: Sequence[tuple[str, int]] = (),
        roots: Sequence[int] = (),
        every: float = 2.0,
    ) -> None:
        self.marker, self.nodes, self.roots, self.every = marker, list(nodes), list(roots), every
        self.me = os.getpid() if marker is not None else None  # an actor leaves itself out
        self.peaks = Peaks()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.every):
                return

    def sample(self) -> None:
        started = time.perf_counter()
        workers: set[int] = set()
        store = 0
        for ip, port in self.nodes:
            try:
                workers |= worker_pids(ip, port)
                store += store_usage(ip, port).bytes_used
            except Exception:  # a raylet going away (node removed, shutting down)
                continue
        if self.marker is None:
            pids = set(self.roots)
        else:
            pids = session_pids(self.marker, [*self.roots, *workers]) - {self.me}
        procs = process_memory(pids, workers, self.roots[0] if self.roots else -1)
        total = sum(p.uss if p.uss is not None else p.rss for p in procs)
        with self._lock:
            p = self.peaks
            p.uss, p.store = max(p.uss, total), max(p.store, store)
            p.processes = max(p.processes, len(procs))
            p.samples += 1
            p.uss_complete = p.uss_complete and all(q.uss is not None for q in procs)
            p.cost_s += time.perf_counter() - started

    def take(self) -> Peaks:
        """The peaks since the last take (one more sample first), and start afresh."""
        self.sample()
        with self._lock:
            peaks, self.peaks = self.peaks, Peaks()
        return peaks

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class SessionMemory:
    """One HostSampler per host of the Ray session (or of this process, without Ray)."""

    def __init__(self, with_ray: bool, every: float = 2.0) -> None:
        self.local: HostSampler | None = None
        self.actors: list[Any] = []
        if not with_ray:
            self.local = HostSampler(None, (), [os.getpid()], every)
            return
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        marker = ray._private.worker._global_node.get_session_dir_path()  # noqa: SLF001
        here = ray.util.get_node_ip_address()
        hosts: dict[str, list[dict[str, Any]]] = {}
        for node in ray.nodes():
            if node["Alive"]:
                hosts.setdefault(node["NodeManagerAddress"], []).append(node)
        actor = ray.remote(num_cpus=0)(HostSampler)
        for ip, nodes in hosts.items():
            addresses = [(n["NodeManagerAddress"], n["NodeManagerPort"]) for n in nodes]
            roots = [os.getpid()] if ip == here else []
            pin = NodeAffinitySchedulingStrategy(nodes[0]["NodeID"], soft=False)
            self.actors.append(
                actor.options(scheduling_strategy=pin, name=None).remote(
                    marker, addresses, roots, every
                )
            )

    def take(self) -> Peaks:
        """The session's peaks since the last take: the sum over hosts."""
        if self.local is not None:
            return self.local.take()
        import ray

        total = Peaks()
        for peaks in ray.get([a.take.remote() for a in self.actors]):
            total = total.add(peaks)
        return total

    def close(self) -> None:
        if self.local is not None:
            self.local.stop()
            return
        import ray

        for handle in self.actors:
            try:
                ray.kill(handle)
            except Exception:  # already gone with its node
                continue
        self.actors = []
