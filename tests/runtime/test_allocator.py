"""Every simulator process pins glibc's malloc thresholds (runtime.pin_malloc)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import pytest

from fslsage_ray.config import load_config
from fslsage_ray.runtime import allocator


def _glibc() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return hasattr(
            ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "gnu_get_libc_version"
        )
    except OSError:
        return False


@pytest.mark.skipif(not _glibc(), reason="glibc only")
def test_glibc_accepts_the_thresholds_and_a_second_call_is_free() -> None:
    assert allocator.pin_malloc_thresholds()
    assert allocator.pin_malloc_thresholds()


def test_thresholds_are_within_what_glibc_allows() -> None:
    # mallopt refuses an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit).
    assert allocator.MMAP_THRESHOLD_BYTES <= 32 * 1024 * 1024
    assert allocator.TRIM_THRESHOLD_BYTES >= allocator.MMAP_THRESHOLD_BYTES


def test_on_by_default_and_can_be_turned_off() -> None:
    assert load_config(None).runtime.pin_malloc is True
    assert load_config(None, ["runtime.pin_malloc=false"]).runtime.pin_malloc is False
