"""Decoded arrays kept on disk and memory-mapped on reuse, so a run decodes its JPEGs once.

An entry is a folder of .npy files plus `key.json`, named by a hash of its key (the source
file's SHA-256 and everything that shapes the decoded bytes). It is written into a temporary
folder and renamed into place, so a killed process never leaves a half entry; an entry that
fails to load (short file, bad header, other shapes than its key file says) is removed and
rebuilt. The folder is `$FSLSAGE_RAY_CACHE/decoded` (default ~/.cache/fslsage_ray/decoded);
FSLSAGE_RAY_CACHE=off keeps nothing on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fslsage_ray.data.file_hash import cache_root

log = logging.getLogger("fslsage_ray")

DECODED_DIR = "decoded"
KEY_FILE = "key.json"

Arrays = dict[str, np.ndarray]


def decoded_dir() -> Path | None:
    root = cache_root()
    return None if root is None else root / DECODED_DIR


def entry_name(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def _remove(entry: Path) -> None:
    shutil.rmtree(entry, ignore_errors=True)


def load_entry(folder: Path, key: Mapping[str, Any]) -> Arrays | None:
    """The entry's arrays, memory-mapped read-only; None when absent or broken (then removed)."""
    entry = folder / entry_name(key)
    if not entry.is_dir():
        return None
    try:
        saved = json.loads((entry / KEY_FILE).read_text())
        if saved["key"] != json.loads(json.dumps(dict(key))):
            raise ValueError("key differs")
        arrays = {}
        for name, (shape, dtype) in saved["arrays"].items():
            array = np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            if list(array.shape) != shape or array.dtype.str != dtype:
                raise ValueError(f"{name}: {array.shape} {array.dtype}, expected {shape} {dtype}")
            arrays[name] = np.asarray(array)  # a plain read-only ndarray over the mapping
        return arrays
    except (OSError, ValueError, KeyError, TypeError, EOFError) as err:
        log.warning("decoded-data cache entry %s is unreadable (%s); rebuilding it", entry, err)
        _remove(entry)
        return None


def save_entry(folder: Path, key: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Write an entry atomically: a temporary folder renamed into place as a whole."""
    entry = folder / entry_name(key)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=folder))
    try:
        for name, array in arrays.items():
            with open(tmp / f"{name}.npy", "wb") as handle:
                np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
                handle.flush()
                os.fsync(handle.fileno())
        manifest = {a: [list(v.shape), v.dtype.str] for a, v in arrays.items()}
        (tmp / KEY_FILE).write_text(json.dumps({"key": dict(key), "arrays": manifest}))
        try:
            os.rename(tmp, entry)
        except OSError:
            if not entry.is_dir():
                raise
            # Another process stored the same entry first; its copy is as good as ours.
    finally:
        _remove(tmp)


def cached_arrays(key: Mapping[str, Any], compute: Callable[[], Arrays]) -> Arrays:
    """The arrays stored under `key`, else `compute()` stored for next time. Either way they
    come back read-only, so a run sees the same kind of array warm or cold."""
    folder = decoded_dir()
    arrays = load_entry(folder, key) if folder is not None else None
    if arrays is not None:
        return arrays
    arrays = compute()
    if folder is not None:
        try:
            save_entry(folder, key, arrays)
        except OSError as err:  # a full or read-only disk must not stop the run
            log.warning("cannot store decoded data in %s: %s", folder, err)
    for array in arrays.values():
        array.flags.writeable = False
    return arrays
