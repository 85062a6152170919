"""A recording channel and a tiny in-memory server, for driving clients without a backend."""

from __future__ import annotations

import numpy as np

from fslsage_ray.tasks import Payload


class RecordingChannel:
    """Records uploads; answers exchanges with a fixed gradient (or a server's). Payloads
    cross as numpy, as between processes."""

    keeps_tensors = False

    def __init__(self, server=None) -> None:
        self.sent: list[tuple[int, int, tuple, tuple]] = []
        self.server = server

    def upload(self, it: int, cid: int, payload: Payload) -> None:
        self.sent.append((it, cid, payload.smashed.shape, payload.targets.shape))
        if self.server is not None:
            self.server.process_upload(cid, payload)

    def exchange(self, it: int, cid: int, payload: Payload) -> np.ndarray:
        self.sent.append((it, cid, payload.smashed.shape, payload.targets.shape))
        if self.server is not None:
            return self.server.process_upload(cid, payload)
        return np.zeros_like(payload.smashed)
