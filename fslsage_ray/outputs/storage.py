"""Where outputs live: a local folder, or a URI that pyarrow.fs understands (file://, s3://,
gs://, hdfs://), so results outlive the cluster that made them.

A run works in a local staging folder as it always has; a `Mirror` copies each file that
changed to the URI after every round. Object stores have no rename, so each file goes up
whole in one request (a single PUT; over the S3 part size, one multipart upload, which also
appears only when complete): a reader sees the old file or the new one, never half of one.

Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL, GOOGLE_APPLICATION_CREDENTIALS, ...), never from the URI, which is saved
with the run; non-secret options ride in its query (`?endpoint_override=host:port&scheme=http`).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from fslsage_ray.config import ConfigError

Where = str | Path  # a local folder or a URI
COPY_CHUNK = 8 * 1024**2  # bytes per read and write when a file is copied to or from a URI


def is_uri(where: Where) -> bool:
    return isinstance(where, str) and "://" in where


def _split(uri: str) -> tuple[str, str]:
    """("s3://bucket/run", "endpoint_override=...") from a URI with or without a query."""
    base, _, query = uri.partition("?")
    return base.rstrip("/"), query


def join(where: Where, *names: str) -> Where:
    """A file or folder inside `where`, keeping a URI's query (its filesystem options)."""
    if not is_uri(where):
        return Path(where).joinpath(*names)
    base, query = _split(str(where))
    return "/".join([base, *names]) + (f"?{query}" if query else "")


def name_of(where: Where) -> str:
    """The last part of a folder's path or URI (the run's folder name)."""
    return _split(str(where))[0].rsplit("/", 1)[-1] if is_uri(where) else Path(where).name


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and path a URI names; refused (one line) when it is not usable."""
    if "@" in urlsplit(uri).netloc:
        raise ConfigError(
            f"{_split(uri)[0].split('@')[-1]}: keep credentials out of the URI (it is saved with "
            "the run); set them in the environment, e.g. AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"cannot use {uri} for outputs: {exc}") from exc
    if isinstance(fs, pafs.S3FileSystem):  # delayed open: a small file is one PutObject
        _, (options,) = fs.__reduce__()
        fs = pafs.S3FileSystem(**{**options, "allow_delayed_open": True})
    return fs, path.rstrip("/")


def write_bytes(where: Where, data: bytes) -> None:
    """The whole file in one request (no temporary name: object stores cannot rename)."""
    if not is_uri(where):
        Path(where).write_bytes(data)
        return
    fs, path = filesystem(str(where))
    if isinstance(fs, pafs.LocalFileSystem):  # object stores need no folders
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(data)


def upload_file(path: Path, where: Where) -> None:
    """`write_bytes` for a file of any size: copied in chunks, never whole in memory (a
    checkpoint's participant states can be gigabytes)."""
    fs, target = filesystem(str(where))
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
    with open(path, "rb") as source, fs.open_output_stream(target) as out:
        shutil.copyfileobj(source, out, COPY_CHUNK)


def download_file(where: Where, target: Path) -> None:
    """The remote file into `target`, in chunks."""
    fs, path = filesystem(str(where))
    with fs.open_input_stream(path) as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out, COPY_CHUNK)


def read_bytes(where: Where) -> bytes:
    if not is_uri(where):
        return Path(where).read_bytes()
    fs, path = filesystem(str(where))
    with fs.open_input_stream(path) as stream:
        return stream.read()


def is_file(where: Where) -> bool:
    if not is_uri(where):
        return Path(where).is_file()
    fs, path = filesystem(str(where))
    return fs.get_file_info(path).type == pafs.FileType.File


def files_under(uri: str) -> list[str]:
    """Paths of every file below a URI folder, relative to it ("a.txt", "sub/b.txt")."""
    fs, root = filesystem(uri)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(i.path[len(root) + 1 :] for i in infos if i.type == pafs.FileType.File and i.path)


def has_files(where: Where) -> bool:
    if not is_uri(where):
        path = Path(where)
        return path.is_dir() and any(path.iterdir())
    return bool(files_under(str(where)))


def delete(where: Where) -> None:
    """Remove one file if it is there."""
    if not is_uri(where):
        Path(where).unlink(missing_ok=True)
        return
    fs, path = filesystem(str(where))
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)


def download(uri: str, local: Path, names: Iterable[str] | None = None) -> list[Path]:
    """Copy the files below `uri` (or only those whose file name is in `names`) into
    `local`, keeping the folder structure."""
    wanted = None if names is None else set(names)
    copied = []
    for rel in files_under(uri):
        if wanted is not None and rel.rsplit("/", 1)[-1] not in wanted:
            continue
        target = local / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        download_file(join(uri, *rel.split("/")), target)
        copied.append(target)
    return copied


class Mirror:
    """A local staging folder whose changed files are uploaded to `uri` on each `sync`."""

    def __init__(self, uri: str) -> None:
        filesystem(uri)  # a bad URI or credentials in it: refused before any work
        self.uri = uri
        self.local = Path(tempfile.mkdtemp(prefix="fslsage-ray-"))
        self._sent: dict[str, tuple[int, int]] = {}  # relative path -> (size, mtime_ns)

    def fetch(self, names: Iterable[str] | None = None) -> None:
        """Bring the remote files (all, or those named) into the staging folder, as sent."""
        for path in download(self.uri, self.local, names):
            self._sent[path.relative_to(self.local).as_posix()] = _stamp(path)

    def sync(self, last: Iterable[str] = ()) -> list[str]:
        """Upload every file that is new or changed since the last sync; returns their paths.
        Those named in `last` go after the rest (a checkpoint after the states it names)."""
        last = set(last)
        sent = []
        paths = (p for p in self.local.rglob("*") if p.is_file())
        for path in sorted(paths, key=lambda p: (p.name in last, p.as_posix())):
            rel = path.relative_to(self.local).as_posix()
            if rel.endswith(".tmp") or self._sent.get(rel) == _stamp(path):
                continue
            stamp = _stamp(path)
            upload_file(path, join(self.uri, *rel.split("/")))
            self._sent[rel] = stamp
            sent.append(rel)
        return sent

    def remove(self, rel: str) -> None:
        """Delete a file from the URI (and the staging folder) that the run no longer needs."""
        (self.local / rel).unlink(missing_ok=True)
        if self._sent.pop(rel, None) is not None:
            delete(join(self.uri, *rel.split("/")))

    @property
    def sent(self) -> list[str]:
        """Paths (relative) of the files at the URI as this mirror last saw or sent them."""
        return list(self._sent)

    def close(self) -> None:
        """Upload what is left, then drop the staging folder."""
        try:
            self.sync()
        finally:
            shutil.rmtree(self.local, ignore_errors=True)


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@contextlib.contextmanager
def output_folder(where: Where) -> Iterator[Path]:
    """A local folder to write into; for a URI, a staging folder uploaded on leaving."""
    if not is_uri(where):
        path = Path(where)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    mirror = Mirror(str(where))
    try:
        yield mirror.local
        mirror.sync()
    finally:
        shutil.rmtree(mirror.local, ignore_errors=True)


@contextlib.contextmanager
def input_folders(wheres: Iterable[Where], names: Iterable[str]) -> Iterator[list[Path]]:
    """Local copies of folders (URIs are downloaded, files named `names` only)."""
    names = tuple(names)
    scratch = Path(tempfile.mkdtemp(prefix="fslsage-ray-in-"))
    try:
        local = []
        for i, where in enumerate(wheres):
            if not is_uri(where):
                local.append(Path(where))
                continue
            target = scratch / str(i) / name_of(where)
            if not download(str(where), target, names):
                raise FileNotFoundError(f"{where} holds no run folder (no {', '.join(names)})")
            local.append(target)
        yield local
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
