"""Every participant's state in one file, written and read one participant at a time.

A checkpoint used to hold every client's state (and SplitFed-MS's per-client server copies,
FSL-SAGE's per-client AMs and buffers) inside one pickled payload: the driver gathered them
all before writing, and read them all back before restoring. At 10,000 clients that was
gigabytes in one process even though the run itself streams participants through a bounded
memory. Here each state is its own record in an append-only file (a `torch.save` of that
state's tensors), so the driver holds one chunk of states at a time, and a host restores
its entries a chunk at a time, spilling as it goes.

The index (role -> client id -> [offset, length]) goes into the small checkpoint payload;
records are read back with torch.load(weights_only=True), so reading cannot run code.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

STATES_PREFIX = "checkpoint_states-r"
STATES_SUFFIX = ".bin"
ROLES = ("clients", "server")  # client hosts' clients; the server's per-client entries


class StatesFileError(RuntimeError):
    """The states file a checkpoint names is missing or not the one it wrote."""


def states_file_name(round_done: int) -> str:
    """One file per checkpointed round: the checkpoint that names it is replaced atomically
    after it is complete, so a crash between the two leaves the previous pair intact."""
    return f"{STATES_PREFIX}{round_done}{STATES_SUFFIX}"


def is_states_file(name: str) -> bool:
    return name.startswith(STATES_PREFIX) and name.endswith(STATES_SUFFIX)


class StatesWriter:
    """Appends states as records; `finish` makes the file visible under its final name."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed by finish/abandon
        self.index: dict[str, dict[int, list[int]]] = {role: {} for role in ROLES}
        self.last_bytes = 0  # the size of the last record, to size the next chunk

    def add(self, role: str, cid: int, state: Mapping[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save(dict(state), buffer)
        data = buffer.getbuffer()
        offset = self._file.tell()
        self._file.write(data)
        self.index[role][int(cid)] = [offset, len(data)]
        self.last_bytes = len(data)

    def finish(self) -> dict[str, Any]:
        """Flushed to disk and renamed; the reference a checkpoint payload keeps."""
        self._file.flush()
        os.fsync(self._file.fileno())
        size = self._file.tell()
        self._file.close()
        os.replace(self._tmp, self.path)
        return {"file": self.path.name, "bytes": size, "index": self.index}

    def abandon(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


class StatesReader:
    """The records of a finished states file, read one at a time."""

    def __init__(self, folder: Path, ref: Mapping[str, Any]) -> None:
        self.path = Path(folder) / ref["file"]
        self.index: Mapping[str, Mapping[int, list[int]]] = ref["index"]
        if not self.path.is_file():
            raise StatesFileError(
                f"the checkpoint's participant states {self.path} are missing; the run can "
                "only be started again"
            )
        size = self.path.stat().st_size
        if size != ref["bytes"]:
            raise StatesFileError(
                f"{self.path} has {size} bytes, the checkpoint wrote {ref['bytes']}: it is "
                "not the file this checkpoint was saved with"
            )

    def ids(self, role: str) -> list[int]:
        return sorted(self.index.get(role, {}))

    def record_bytes(self, role: str, cid: int) -> int:
        return self.index[role][cid][1]

    def read(self, role: str, cid: int) -> dict[str, Any]:
        offset, length = self.index[role][cid]
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)

    def items(self, role: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """(client id, state) in client order, one read at a time (for tools and tests)."""
        for cid in self.ids(role):
            yield cid, self.read(role, cid)
