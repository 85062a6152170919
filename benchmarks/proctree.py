"""Run a command and measure its whole process tree: peak memory, and when things happened.

A run on Ray is many processes: the driver, the GCS, the raylet, agents and workers. A
private Ray started by `ray.init` (ours and Flower's alike) starts all of them below the
driver, so the tree under the command's process is the whole run, and summing over it
compares a Flower run with ours on equal terms. Summed USS (pages only that process maps) is
the total that double-counts nothing; summed RSS counts shared libraries (the CUDA build of
torch maps a lot) once per process and is reported beside it.

Reading USS walks a process's page tables (/proc/<pid>/smaps_rollup, about 80 ms per 2 GiB
process here): sampled every 0.2 s it took half a core from the runs being measured. So a
tick (every 0.2 s) reads RSS and RssAnon (anonymous resident memory, from /proc/<pid>/status,
cheap), and the tree is looked up again and swept for USS every `uss_every` seconds (5 by
default: memory here rises and plateaus for minutes). The cost is recorded and printed.

psutil is the copy Ray ships (ray/thirdparty_files) when it is not installed on its own.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any


def psutil_module() -> ModuleType:
    """psutil, installed or from Ray's vendored copy, without importing Ray itself."""
    try:
        import psutil
    except ImportError:
        spec = importlib.util.find_spec("ray")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("psutil is needed: install it, or ray (which ships it)") from None
        sys.path.append(str(Path(next(iter(spec.submodule_search_locations))) / "thirdparty_files"))
        import psutil
    return psutil


def anon_bytes(pid: int) -> int | None:
    """RssAnon of a process (Linux): its resident anonymous memory, read without the page
    walk USS needs; close to USS for processes that were not forked from a big parent."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@dataclass
class TreeMemory:
    """Peaks over the samples of one process tree, in bytes."""

    peak_uss: int = 0  # over the USS sweeps
    peak_rss: int = 0  # over every tick
    peak_anon: int = 0  # over every tick: summed RssAnon
    peak_processes: int = 0
    samples: int = 0
    uss_samples: int = 0
    uss_complete: bool = True  # every process's USS was readable in every sweep
    cost_s: float = 0.0  # time spent sampling (on this machine's cores)
    timeline: list[tuple[float, int, int, int | None]] = field(default_factory=list)
    # (t, rss, anon, uss or None)
    at_peak: list[tuple[int, str, int, int]] = field(default_factory=list)
    # (pid, name, rss, uss) of every process in the sweep with the highest summed USS


class TreeSampler:
    """Samples the tree under `root` on a thread every `every` seconds until stopped.

    Every tick reads RSS and RssAnon of the processes found last (cheap); every `uss_every`
    seconds the tree is looked up again (psutil reads every process on the machine for it)
    and a USS sweep (smaps_rollup, about 80 ms per 2 GiB process) runs.
    """

    def __init__(self, root: int, every: float = 0.2, uss_every: float = 5.0) -> None:
        self.psutil = psutil_module()
        self.root = root
        self.every = every
        self.uss_every = uss_every
        self.memory = TreeMemory()
        self.ticks: list[Callable[[], None]] = []  # also called every tick (e.g. file polls)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tree-sampler", daemon=True)
        self._t0 = time.time()
        self._last_sweep = float("-inf")
        self._procs: list[Any] = []  # the tree as last looked up

    def _tree(self) -> list[Any]:
        try:
            root = self.psutil.Process(self.root)
            return [root, *root.children(recursive=True)]
        except self.psutil.Error:
            return []  # the command has ended

    def sample(self, force_uss: bool = False) -> None:
        t0 = time.perf_counter()
        sweep = force_uss or t0 - self._last_sweep >= self.uss_every
        if sweep or not self._procs:  # finding the tree reads every process on the machine
            self._procs = self._tree()
        procs = self._procs
        rss, anon, uss, complete, alive = 0, 0, 0, True, 0
        each: list[tuple[int, str, int, int]] = []
        for proc in procs:
            try:
                if sweep:
                    try:
                        info = proc.memory_full_info()
                        rss, uss = rss + info.rss, uss + info.uss
                        each.append((proc.pid, proc.name(), info.rss, info.uss))
                    except self.psutil.AccessDenied:
                        rss, complete = rss + proc.memory_info().rss, False
                else:
                    rss += proc.memory_info().rss
            except self.psutil.Error:
                continue  # ended while we looked
            anon += anon_bytes(proc.pid) or 0
            alive += 1
        m = self.memory
        m.cost_s += time.perf_counter() - t0
        if not alive:
            return
        m.samples += 1
        m.peak_rss = max(m.peak_rss, rss)
        m.peak_anon = max(m.peak_anon, anon)
        m.peak_processes = max(m.peak_processes, alive)
        if sweep:
            self._last_sweep = t0
            m.uss_samples += 1
            if uss > m.peak_uss:
                m.peak_uss, m.at_peak = uss, each
            m.uss_complete = m.uss_complete and complete
        m.timeline.append((time.time() - self._t0, rss, anon, uss if sweep else None))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            for tick in self.ticks:
                tick()
            self._stop.wait(self.every)

    def start(self) -> None:
        self._t0 = time.time()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class TreeRun:
    """One command's run: its exit status, output lines (with arrival times), memory."""

    command: list[str]
    returncode: int
    start: float  # time.time() just before the process was started
    end: float
    lines: list[tuple[float, str]]  # (time.time() at arrival, line) of stdout and stderr
    memory: TreeMemory

    @property
    def wall_s(self) -> float:
        return self.end - self.start

    def tail(self, n: int = 40) -> str:
        return "\n".join(line for _, line in self.lines[-n:])


def run_tree(
    command: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    every: float = 0.2,
    uss_every: float = 5.0,
    on_tick: Callable[[], None] | None = None,
    timeout: float | None = None,
    echo: bool = False,
) -> TreeRun:
    """Run `command`, sampling its process tree until it ends; output is merged."""
    start = time.time()
    proc = subprocess.Popen(
        list(command),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    sampler = TreeSampler(proc.pid, every, uss_every)
    if on_tick is not None:
        sampler.ticks.append(on_tick)
    sampler.start()
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.time(), line.rstrip("\n")))
            if echo:
                print(f"    | {line}", end="", flush=True)

    reader = threading.Thread(target=read, name="tree-reader", daemon=True)
    reader.start()
    try:
        returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()  # our own child, by its handle
        returncode = proc.wait()
    finally:
        sampler.stop()
    end = time.time()
    reader.join(timeout=10)
    return TreeRun(list(command), returncode, start, end, lines, sampler.memory)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment for a benchmark's child: a private Ray on loopback, no usage
    statistics, never an outside cluster."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env
