"""provenance.json: what produced a run folder, so two folders can be told apart later.

Each start (and each resume) appends one entry: the package's version and source identity
(git commit and dirty flag in a checkout, else a hash of its source files, as under
`ray job submit --working-dir`, which ships no .git), library versions, the machine, the
devices and cluster used, the command line, the seed and a SHA-256 of every data file read.
Reading it needs no torch. `ProvenanceRecord` is the run callback that appends the entry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from fslsage_ray.data.file_hash import file_sha256
from fslsage_ray.outputs.callbacks import RunCallback, RunInfo

PROVENANCE_FILE = "provenance.json"
LIBRARIES = ("fslsage-ray", "torch", "torchvision", "ray", "pyarrow", "numpy", "transformers")
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def source_identity(package_dir: Path = PACKAGE_DIR) -> dict[str, Any]:
    """The git commit and dirty flag of the checkout holding the package, else a hash of
    the package's own source files."""
    try:
        run = {"cwd": package_dir, "capture_output": True, "text": True, "timeout": 10}
        commit = subprocess.run(["git", "rev-parse", "HEAD"], check=True, **run).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], check=True, **run
        ).stdout
        return {"git_commit": commit, "git_dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        digest = hashlib.sha256()
        for path in sorted(package_dir.rglob("*.py")):
            digest.update(str(path.relative_to(package_dir)).encode())
            digest.update(path.read_bytes())
        return {"source_sha256": digest.hexdigest()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> dict[str, Any]:
    """CUDA and cuDNN versions and GPU names, where torch is loaded and sees a GPU."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return {}
    return {
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }


def data_hashes(files: Iterable[str | Path]) -> dict[str, str]:
    return {str(Path(f).resolve()): file_sha256(f) for f in files}


def provenance_entry(
    seed: int,
    data_files: Iterable[str | Path],
    backend: str,
    cluster_nodes: Sequence[Mapping[str, float]] = (),
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """One start of a run, as plain JSON."""
    return {
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": list(sys.argv if argv is None else argv),
        "seed": seed,
        "source": source_identity(),
        "versions": {"python": platform.python_version()}
        | {name: _version(name) for name in LIBRARIES},
        "machine": {
            "host": platform.node(),
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
        }
        | _gpus(),
        "backend": backend,
        "cluster_nodes": [dict(node) for node in cluster_nodes],
        "data_sha256": data_hashes(data_files),
    }


def read_provenance(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / PROVENANCE_FILE
    if not path.is_file():
        return []
    return list(json.loads(path.read_text()).get("entries", []))


def append_provenance(run_dir: str | Path, entry: Mapping[str, Any]) -> Path:
    """Add an entry (a resume adds one; nothing earlier is overwritten), atomically."""
    path = Path(run_dir) / PROVENANCE_FILE
    entries = [*read_provenance(run_dir), dict(entry)]
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"entries": entries}, indent=1, default=str))
    os.replace(tmp, path)
    return path


def changed_data(run_dir: str | Path, now: Mapping[str, str]) -> list[str]:
    """Data files whose hash differs from the folder's last entry (or that are new/gone)."""
    entries = read_provenance(run_dir)
    if not entries:
        return []
    before = entries[-1].get("data_sha256", {})
    return sorted(f for f in set(before) | set(now) if before.get(f) != now.get(f))


class ProvenanceRecord(RunCallback):
    """Appends this start's entry (RunInfo.provenance) to the run folder as the run starts."""

    def on_run_start(self, run: RunInfo) -> None:
        if run.run_dir is not None and run.provenance:
            append_provenance(run.run_dir, run.provenance)
