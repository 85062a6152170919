"""A recording channel and a tiny in-memory server, for driving clients without a backend."""

from __future__ import annotations

import numpy as np


class RecordingChannel:
    """Records uploads; answers exchanges with a fixed gradient (or a server's)."""

    def __init__(self, server=None) -> None:
        self.sent: list[tuple[int, int, tuple, tuple]] = []
        self.server = server

    def upload(self, it: int, cid: int, smashed: np.ndarray, labels: np.ndarray) -> None:
        self.sent.append((it, cid, smashed.shape, labels.shape))
        if self.server is not None:
            self.server.process_upload(cid, smashed, labels)

    def exchange(self, it: int, cid: int, smashed: np.ndarray, labels: np.ndarray) -> np.ndarray:
        self.sent.append((it, cid, smashed.shape, labels.shape))
        if self.server is not None:
            return self.server.process_upload(cid, smashed, labels)
        return np.zeros_like(smashed)
