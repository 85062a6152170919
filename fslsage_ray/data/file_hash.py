"""Where the on-disk caches live, and SHA-256 of data files remembered by path, size and mtime.

One hash serves both provenance.json (which data a run read) and the decoded-array cache (its
key), so a big file is read for hashing once, not once per use. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CACHE_ENV = "FSLSAGE_RAY_CACHE"  # a folder; "off" (or empty) keeps nothing on disk
DEFAULT_CACHE_ROOT = Path("~/.cache/fslsage_ray")
HASH_FILE = "file_hashes.json"


def cache_root() -> Path | None:
    """The folder for cached hashes and decoded arrays, read at call time (tests point the
    environment variable at a temporary folder); None when caching is switched off."""
    value = os.environ.get(CACHE_ENV)
    if value is None:
        return DEFAULT_CACHE_ROOT.expanduser()
    if value.strip() in ("", "off"):
        return None
    return Path(value).expanduser()


def _default_hash_file() -> Path | None:
    root = cache_root()
    return None if root is None else root / HASH_FILE


def file_sha256(path: str | Path, cache_file: Path | bool | None = True) -> str:
    """SHA-256 of a file, remembered by (path, size, mtime) so a big file is hashed once.

    cache_file: a JSON file to remember hashes in; True: the default one under the cache
    root; None or False: remember nothing.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    if cache_file is True:
        cache_path = _default_hash_file()
    elif cache_file is None or cache_file is False:
        cache_path = None
    else:
        cache_path = Path(cache_file).expanduser()
    cache: dict[str, str] = {}
    if cache_path is not None and cache_path.is_file():
        try:
            cache = json.loads(cache_path.read_text())
        except (OSError, ValueError):
            cache = {}
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    if cache_path is not None:
        cache[key] = value
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache))
            os.replace(tmp, cache_path)
        except OSError:
            pass  # a read-only cache folder costs a re-hash next time, nothing more
    return value
