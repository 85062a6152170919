"""The one Channel (algorithms/base.py) of every backend: how a host's clients reach the server.

What differs between a server in this process and one in a Ray actor is decided here, once,
from the server's handle:
- in this process an upload is applied at once, and keeps the client's tensors (on a GPU,
  no copy to the host and back);
- to an actor, uploads go as numpy, gathered `max_inflight_uploads / 2` at a time (one call
  and one object for several clients' uploads), with at most `max_inflight_uploads` sent and
  not yet applied (back-pressure); SplitFed batches are queued and sent together when the
  first of their answers is needed, so a host pipelines `max_inflight_uploads` clients.
The server applies uploads in its fixed order whatever calls they came in, so neither
gathering nor pipelining changes a number.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fslsage_ray.runtime.handles import Handle
from fslsage_ray.tasks.base import Payload, PayloadArray

Upload = tuple[int, int, Payload]  # (iteration, client id, payload)


class ServerChannel:
    def __init__(self, server: Handle, max_inflight: int) -> None:
        self.server = server
        self.keeps_tensors = server.local
        self.max_inflight = max_inflight
        self.gather = 1 if server.local else max(1, max_inflight // 2)  # uploads per call
        self.window = 1 if server.local else max_inflight  # exchanges a host overlaps
        self.seconds = 0.0  # spent in here: handing over (in one process, the server's work)
        self._pending: list[Upload] = []  # gathered, not yet sent
        self._inflight: list[tuple[Any, int]] = []  # (reply, uploads in it)
        self._exchanges: list[Upload] = []  # SplitFed batches, not yet sent
        self._sent = 0  # queues of exchanges sent so far
        self._answers: dict[int, list] = {}  # queue number -> [reply, answers, answers left]

    @contextmanager
    def _timed(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - t0

    def upload(self, it: int, cid: int, payload: Payload) -> None:
        """Send and go on (the server's processing is not awaited)."""
        with self._timed():
            self._pending.append((it, cid, payload))
            if len(self._pending) >= self.gather:
                self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        self._inflight.append((self.server.call("take_uploads", self._pending), len(self._pending)))
        self._pending = []
        while sum(n for _, n in self._inflight) > self.max_inflight:
            done = self.server.first_done([reply for reply, _ in self._inflight])
            self.server.get(done)  # raises here if the server failed on an upload
            self._inflight = [(r, n) for r, n in self._inflight if r is not done]

    def exchange(self, it: int, cid: int, payload: Payload) -> PayloadArray:
        """Send and wait for dL/dz (SplitFed)."""
        return self.exchange_finish(self.exchange_start(it, cid, payload))

    def exchange_start(self, it: int, cid: int, payload: Payload) -> tuple[int, int]:
        """Queue a SplitFed batch; the queue goes to the server, as one call, when the first
        of its answers is asked for."""
        self._exchanges.append((it, cid, payload))
        return self._sent, len(self._exchanges) - 1

    def exchange_finish(self, handle: tuple[int, int]) -> PayloadArray:
        with self._timed():
            number, index = handle
            if number == self._sent:  # still queued: send the queue (uploads first)
                self._flush()
                reply = self.server.call("take_exchanges", self._exchanges)
                self._answers[number] = [reply, None, len(self._exchanges)]
                self._exchanges, self._sent = [], self._sent + 1
            entry = self._answers[number]
            if entry[1] is None:
                entry[1] = self.server.get(entry[0])
            entry[2] -= 1
            if entry[2] == 0:
                del self._answers[number]
            return entry[1][index]

    def drain(self) -> None:
        """At the end of a local phase: everything sent, and taken by the server (its errors
        surface here)."""
        with self._timed():
            self._flush()
            for reply, _ in self._inflight:
                self.server.get(reply)
            self._inflight = []
