"""Resuming a job of several runs (`compare`, `scale`) in its folder.

The folder records what the job is (every run's name and resolved config) and which runs
finished. Running the same job again keeps the finished runs and runs only the others; a
folder that holds another job is refused in one line, so results of two jobs never mix.
Works on a local folder or a URI (one small file, rewritten whole).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from fslsage_ray.config import Config, ConfigError, config_to_dict
from fslsage_ray.outputs.storage import Where, is_file, join, read_bytes, write_bytes


def job_spec(runs: Iterable[tuple[str, Config]]) -> dict[str, Any]:
    """What makes two jobs the same job: every run's name and config, as JSON would hold it."""
    return json.loads(json.dumps({"runs": {n: config_to_dict(c) for n, c in runs}}, default=str))


def held_job(out_dir: Where, spec_file: str, spec: dict[str, Any], what: str) -> dict | None:
    """The job recorded in out_dir (None when there is none); another job there is refused."""
    path = join(out_dir, spec_file)
    if not is_file(path):
        return None
    held = json.loads(read_bytes(path))
    if held.get("runs") != spec["runs"]:
        raise ConfigError(
            f"{out_dir} holds a {what} with other settings; pass --overwrite or use another --out"
        )
    return held


def write_job(
    out_dir: Where, spec_file: str, spec: dict[str, Any], finished: Sequence[str] = ()
) -> None:
    """Record the job and the runs finished so far (written whole, after every run)."""
    body = {**spec, "finished": list(finished)} if finished else spec
    write_bytes(join(out_dir, spec_file), json.dumps(body, indent=1).encode())


__all__ = ["held_job", "job_spec", "write_job"]
