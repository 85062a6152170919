"""Pack Ray and the CIFAR-10 files for a borrowed GPU machine, in pieces that fit one call each.

The device machine (issue 12, item 6) has Python 3.12 with torch, torchvision and pyarrow, but
no Ray, no registry to install it from, and takes at most 64 MiB of working tree per call. The
Ray 2.60 wheel alone is 76 MiB and the two CIFAR-10 Parquet files 53 MiB. So this script, run
here, writes two git-ignored folders under ``--out`` (default ``.devkit``):

- ``data/``: the CIFAR-10 Parquet files, carried by the first call and copied to /tmp there;
- ``ray/site.tar.xz``: Ray for the device's Python plus the ``jsonschema`` family it imports at
  start and the device lacks, unpacked by the second call into a folder on PYTHONPATH. What a
  simulation never loads is left out (the Java jars, RLlib, Tune, Train, Serve, Data, LLM, the
  dashboard's web client) and the symbol tables of the big binaries are stripped: about
  20 MiB instead of 76.

It checks each call's size against the limit (the tracked repository travels every time) and
prints the two calls; the second runs jobs/gpu_issue12.sh. ``--from-installed`` packs this
interpreter's own installed packages instead of downloading wheels, which is how
tests/jobs/test_device_kit.py checks the result here; it only suits a device with this
machine's Python version.

    python jobs/device_kit.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CALL_LIMIT = 64 * 2**20  # the device tool's working-tree limit per call
# Ray imports jsonschema when it starts (runtime_env/plugin_schema_manager.py); the device has
# attrs, the other packages' one requirement it has, but not these.
PACKAGES = ("ray", "jsonschema", "jsonschema-specifications", "referencing", "rpds-py")
# Parts of the Ray wheel that no simulation here loads.
PRUNED = (
    "ray/jars",
    "ray/rllib",
    "ray/tune",
    "ray/train",
    "ray/serve",
    "ray/data",
    "ray/llm",
    "ray/dashboard/client",
)
DATA_FILES = ("cifar10-train.parquet", "cifar10-test.parquet")
MANYLINUX = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def download_wheels(python: str, dest: Path) -> list[Path]:
    """The wheels of PACKAGES, at the versions installed here, for the device's Python."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in PACKAGES]
    platforms = [arg for platform in MANYLINUX for arg in ("--platform", platform)]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    cmd += ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    subprocess.run([*cmd, *platforms, "-d", str(dest), *pins], check=True)
    return sorted(dest.glob("*.whl"))


def unpack_wheels(wheels: list[Path], site: Path) -> None:
    """A wheel is the installed tree zipped; extracting it is installing it (no scripts)."""
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.infolist():
                path = Path(archive.extract(member, site))
                mode = member.external_attr >> 16
                if mode:
                    path.chmod(mode & 0o777)


def copy_installed(site: Path) -> None:
    """This interpreter's installed PACKAGES, file by file from their records."""
    for name in PACKAGES:
        dist = importlib.metadata.distribution(name)
        for file in dist.files or ():
            source = Path(dist.locate_file(file)).resolve()
            if file.parts[0] == ".." or not source.is_file() or "__pycache__" in file.parts:
                continue
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def prune(site: Path) -> None:
    for relative in PRUNED:
        shutil.rmtree(site / relative, ignore_errors=True)
    for path in site.rglob("*.js.map"):
        path.unlink()


def strip_binaries(site: Path, min_bytes: int = 2**20) -> int:
    """Strip the symbol tables of large ELF files; returns the bytes saved (0 without strip)."""
    strip = shutil.which("strip")
    if strip is None:
        return 0
    saved = 0
    for path in site.rglob("*"):
        if not path.is_file() or path.stat().st_size < min_bytes:
            continue
        with path.open("rb") as handle:
            if handle.read(4) != b"\x7fELF":
                continue
        before = path.stat().st_size
        subprocess.run([strip, "--strip-unneeded", str(path)], check=True)
        saved += before - path.stat().st_size
    return saved


def pack(site: Path, archive: Path, level: int) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:xz", preset=level) as tar:
        for path in sorted(site.iterdir()):
            tar.add(path, arcname=path.name)


def copy_data(data_dir: Path, dest: Path) -> None:
    missing = [name for name in DATA_FILES if not (data_dir / name).is_file()]
    if missing:
        raise SystemExit(f"{data_dir} lacks {', '.join(missing)} (see ../shared/data/README.md)")
    dest.mkdir(parents=True, exist_ok=True)
    for name in DATA_FILES:
        shutil.copy2(data_dir / name, dest / name)


def tracked_bytes() -> int:
    """What travels with every call: the repository's tracked files as they are now."""
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    return sum((REPO / name.decode()).stat().st_size for name in names if name)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def build(args: argparse.Namespace) -> dict:
    out = args.out.resolve()
    ray_dir, data_dir = out / "ray", out / "data"
    shutil.rmtree(ray_dir, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        site.mkdir()
        if args.from_installed:
            copy_installed(site)
        else:
            unpack_wheels(download_wheels(args.python, Path(tmp)), site)
        unpacked = folder_bytes(site)
        prune(site)
        saved = strip_binaries(site)
        pack(site, ray_dir / "site.tar.xz", args.level)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    manifest = {
        "python": here if args.from_installed else args.python,
        "packages": {name: importlib.metadata.version(name) for name in PACKAGES},
        "unpacked_bytes": unpacked,
        "stripped_bytes": saved,
        "archive_bytes": (ray_dir / "site.tar.xz").stat().st_size,
    }
    (ray_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if args.data_dir is not None:
        shutil.rmtree(data_dir, ignore_errors=True)
        copy_data(args.data_dir, data_dir)
    return manifest


def report(out: Path) -> list[str]:
    """Each call's size against the limit; raises if one does not fit."""
    repo = tracked_bytes()
    lines, too_big = [], []
    for name in ("data", "ray"):
        folder = out / name
        if not folder.exists():
            continue
        total = repo + folder_bytes(folder)
        lines.append(
            f"call carrying {name}/: {mib(total)} of {mib(CALL_LIMIT)} (repository {mib(repo)})"
        )
        if total > CALL_LIMIT:
            too_big.append(name)
    if too_big:
        raise SystemExit("\n".join(lines) + f"\ntoo large for one call: {', '.join(too_big)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / ".devkit")
    parser.add_argument("--python", default="3.12", help="the device's Python version")
    parser.add_argument("--data-dir", type=Path, help="folder with the CIFAR-10 Parquet files")
    parser.add_argument(
        "--from-installed",
        action="store_true",
        help="pack this interpreter's installed packages (tests)",
    )
    parser.add_argument("--level", type=int, default=6, help="xz preset, 0-9")
    args = parser.parse_args(argv)
    manifest = build(args)
    print(
        f"ray kit: {mib(manifest['archive_bytes'])} packed from {mib(manifest['unpacked_bytes'])}"
        f" ({mib(manifest['stripped_bytes'])} of symbols stripped); Python {manifest['python']}"
    )
    for line in report(args.out.resolve()):
        print(line)
    for line in device_calls(args.out.resolve()):
        print(line)
    return 0


def device_calls(out: Path) -> list[str]:
    """The two `run` calls of the device tool that use the kit."""
    kit = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    data = "/tmp/fslsage-data"
    return [
        "device calls, the second within 30 s of the first (the machine stays warm that long):",
        f"  1. carry ['{kit}/data']: mkdir -p {data} && cp {kit}/data/* {data}/ && nvidia-smi -L",
        f"  2. carry ['{kit}/ray']: RAY_KIT={kit}/ray/site.tar.xz jobs/gpu_issue12.sh {data} $OUT",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
