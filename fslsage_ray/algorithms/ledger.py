"""Bytes sent, by message kind and direction (spec: "Communication accounting").

Bytes are numel x element size of what is sent. A model transfer counts parameters and
buffers. Kinds are named `<what>.<direction>` so any figure can be redrawn from the table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import torch

GIB = 1024**3

# Every kind any algorithm may record, in display order.
KINDS = (
    "client_model.down",
    "client_model.up",
    "full_model.down",
    "full_model.up",
    "aux_model.down",
    "aux_model.up",
    "smashed.up",
    "labels.up",
    "grad.down",
)


def tensor_nbytes(x: torch.Tensor | np.ndarray) -> int:
    if isinstance(x, np.ndarray):
        return int(x.nbytes)
    return int(x.numel() * x.element_size())


def state_bytes(state: Mapping[str, torch.Tensor | np.ndarray]) -> int:
    """Bytes of a state dict: parameters and buffers (num_batches_tracked is int64: 8 bytes)."""
    return sum(tensor_nbytes(v) for v in state.values())


def column_name(kind: str) -> str:
    return "bytes_" + kind.replace(".", "_")


class Ledger:
    """Running byte counts for the current round; `close_round` returns and resets them.

    Messages booked with `record` also keep who sent them and for which step (the
    simulated clock replays them, fslsage_ray/system/clock.py); `take_messages` hands over
    the round's, as (cid, step, kind, bytes) tuples in booking order.
    """

    def __init__(self) -> None:
        self._round: dict[str, int] = defaultdict(int)
        self._messages: list[tuple[int, int, str, int]] = []

    def record(self, cid: int, step: int, kind: str, nbytes: int) -> None:
        if kind not in KINDS:
            raise KeyError(f"unknown message kind {kind!r}; known: {KINDS}")
        self._round[kind] += int(nbytes)
        self._messages.append((cid, step, kind, int(nbytes)))

    def messages(self) -> list[tuple[int, int, str, int]]:
        """The round's messages so far, left in place (a copy)."""
        return list(self._messages)

    def take_messages(self) -> list[tuple[int, int, str, int]]:
        messages, self._messages = self._messages, []
        return messages

    def close_round(self) -> dict[str, int]:
        counts = {k: self._round[k] for k in KINDS if self._round.get(k)}
        self._round = defaultdict(int)
        return counts
