"""jobs/device_kit.py packs Ray for a machine without it, in calls that fit the device's limit.

The device machine is borrowed for minutes with no registry, so the kit is checked here:
built from this interpreter's own Ray (the device's Python differs, so its wheels cannot run
here), unpacked where packages the device lacks cannot be imported, and used by
jobs/gpu_issue12.sh (the second device call) for its real runs, on the CPU and shrunk.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from job_scripts import SHRINK_FAST, run_script

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "jobs" / "device_kit.py"
# Installed here, absent on the device machine (its package list in the device tool's
# KINDS.md); Ray imports the first four when it starts, so the kit must bring them.
DEVICE_LACKS = (
    "jsonschema",
    "jsonschema_specifications",
    "referencing",
    "rpds",
    "pydantic",
    "aiohttp_cors",
    "colorful",
    "opencensus",
    "opentelemetry",
    "smart_open",
    "virtualenv",
)


def _kit_module():
    spec = importlib.util.spec_from_file_location("device_kit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_call_over_the_device_limit_is_refused_here(tmp_path: Path) -> None:
    kit = _kit_module()
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "site.tar.xz").write_bytes(b"x" * 1024)
    assert "call carrying ray/" in kit.report(tmp_path)[0]
    (tmp_path / "data").mkdir()
    with (tmp_path / "data" / "cifar10-train.parquet").open("wb") as handle:
        handle.truncate(kit.CALL_LIMIT)  # sparse: the size counts, not the disk
    with pytest.raises(SystemExit, match="too large for one call: data"):
        kit.report(tmp_path)


def test_missing_data_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="cifar10-test.parquet"):
        (tmp_path / "cifar10-train.parquet").write_bytes(b"")
        _kit_module().copy_data(tmp_path, tmp_path / "out")


def _blockers(root: Path) -> Path:
    """Modules that raise ModuleNotFoundError on import, as on the device machine."""
    for name in DEVICE_LACKS:
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError('{name} is not on the device', name='{name}')\n"
        )
    return root


@pytest.mark.slow  # packs ~200 MB of Ray, then four real runs (about 2 minutes)
def test_the_kit_runs_the_gpu_checks_where_ray_and_jsonschema_are_missing(
    tmp_path: Path, shared_data: Path
) -> None:
    kit_dir = tmp_path / "kit"
    build = subprocess.run(
        [sys.executable, str(SCRIPT), "--from-installed", "--level", "0", "--out", str(kit_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "call carrying ray/" in build.stdout
    archive = kit_dir / "ray" / "site.tar.xz"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "ray/_raylet.so" in names and "jsonschema/__init__.py" in names
    assert not [n for n in names if n.startswith(("ray/jars", "ray/rllib", "ray/tune"))]
    manifest = json.loads((kit_dir / "ray" / "manifest.json").read_text())
    assert manifest["archive_bytes"] < manifest["unpacked_bytes"] / 4

    site = tmp_path / "site"
    proc = run_script(
        "gpu_issue12.sh",
        [str(shared_data), str(tmp_path / "out")],
        tmp_path,
        600,
        DEVICE="cpu",
        ROUNDS="2",
        CPUS="4",
        EXTRA=SHRINK_FAST,
        RUNS_ROOT=str(tmp_path / "runs"),
        WORK_DIR=str(tmp_path / "work"),
        AUX_SAMPLES="32",
        AUX_EPOCHS="1",
        RAY_KIT=str(archive),
        RAY_SITE=str(site),
        PYTHONPATH=str(_blockers(tmp_path / "blocked")),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"from {site}{os.sep}ray{os.sep}__init__.py" in proc.stdout
    with tarfile.open(tmp_path / "out" / "issue12.tgz") as tar:
        tar.extractall(tmp_path / "back", filter="data")
    back = tmp_path / "back"
    for setting in ("fp32", "bf16_cl"):
        assert "ledgers identical" in (back / setting / "summary.txt").read_text()
    assert "compute: bf16 autocast, channels-last" in (back / "bf16_cl" / "ray.run.log").read_text()
    assert "compute: fp32" in (back / "fp32" / "inprocess.run.log").read_text()
    rows = json.loads((back / "aux_groups.json").read_text())["rows"]
    assert rows[0]["model"] == "resnet18" and rows[0]["max_rel_param_diff"] < 1e-2
