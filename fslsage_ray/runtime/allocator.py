"""Pin glibc malloc's large-allocation policy, so every process trains at the same speed.

glibc serves allocations above a threshold (128 KiB at start) with mmap and returns them to
the OS on free; the threshold rises only after a large mmapped block has been freed. A
process's speed thus depends on its history: the driver, which decoded and partitioned the
data, has a raised threshold and reuses activation buffers from its heap, while a fresh Ray
worker maps, zero-fills and unmaps every activation of every step. Measured on a ResNet-18
epoch (benchmarks/RESULTS.md): the client actor took 4.7 s against 4.0 s in the driver.
Fixing the threshold at glibc's own ceiling (32 MiB) gives every process the same policy.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import sys

import torch

from fslsage_ray.config.schema import RuntimeConfig

log = logging.getLogger("fslsage_ray")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's maximum for the dynamic threshold (64-bit)
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES  # what glibc itself pairs with it

_done = False


def pin_malloc_thresholds() -> bool:
    """Apply once per process; True if glibc accepted it (False elsewhere, e.g. macOS)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and ok
    if not ok:
        log.debug("mallopt refused the thresholds; keeping the C library's defaults")
    _done = ok
    return ok


def torch_threads(runtime: RuntimeConfig) -> int:
    """Threads for every computing process: as set, else the client actor's whole CPUs (a
    process with more threads than its CPU share only contends with its neighbours)."""
    if runtime.torch_threads is not None:
        return runtime.torch_threads
    return max(1, math.floor(runtime.actor_num_cpus))


def prepare_process(runtime: RuntimeConfig) -> None:
    """What every computing process (driver in-process, each actor) sets before its first
    step, so that speed and results do not depend on which process a client lands in."""
    torch.set_num_threads(torch_threads(runtime))
    if runtime.pin_malloc:
        pin_malloc_thresholds()
