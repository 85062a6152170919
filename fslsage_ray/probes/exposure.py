"""Exposure: how many of each client's examples crossed the cut as activations, and how many
gradient messages it received, per round and since the run started.

Counted on the driver from the messages the round's ledger booked (exact: every message a
client sends or receives is booked there, with its step), every round whether probed or
not, so the cumulative counts are exact; they travel in the checkpoint. An upload at step s
carries the client's batch s of its epoch (algorithms/client_view.py's batch sizes, the
last one smaller). FedAvg sends no activations: its counts are a measured zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fslsage_ray.algorithms.client_view import batch_sizes
from fslsage_ray.probes.base import Message, Probe

COLUMNS = (
    "exposed_examples",  # examples that crossed the cut this round, all clients
    "exposed_examples_cum",  # since round 0, all clients
    "exposed_examples_cum_max",  # since round 0, the most exposed client
    "exposed_examples_cum_mean",  # since round 0, mean over all clients
    "exposed_frac_cum_max",  # the most exposed client's count over its data size (passes)
    "grad_messages",  # gradient messages received this round, all clients
    "grad_messages_cum",
    "grad_messages_cum_max",
)


class ExposureProbe(Probe):
    name = "exposure"
    on_server = False

    def start(self, client_sizes: Sequence[int]) -> None:
        """The clients' data sizes (by id), before the first observed round."""
        self.sizes = np.asarray(client_sizes, dtype=np.int64)
        self.batches = [batch_sizes(int(n), self.config.algorithm.batch_size) for n in self.sizes]
        self.examples = np.zeros(len(self.sizes), dtype=np.int64)
        self.grads = np.zeros(len(self.sizes), dtype=np.int64)
        self.round_examples = self.round_grads = 0

    def columns(self) -> tuple[str, ...]:
        return COLUMNS

    def observe(self, t: int, messages: Sequence[Message]) -> None:
        examples = np.zeros_like(self.examples)
        grads = np.zeros_like(self.grads)
        for cid, step, kind, _ in messages:
            if kind == "smashed.up":
                sizes = self.batches[cid]
                examples[cid] += sizes[step % len(sizes)]
            elif kind == "grad.down":
                grads[cid] += 1
        self.examples += examples
        self.grads += grads
        self.round_examples, self.round_grads = int(examples.sum()), int(grads.sum())

    def per_client(self) -> dict[str, np.ndarray]:
        """The cumulative counts by client id (the run folder's probes_exposure.csv)."""
        return {
            "client": np.arange(len(self.sizes)),
            "examples": self.sizes,
            "exposed_examples": self.examples.copy(),
            "grad_messages": self.grads.copy(),
        }

    def ledger_columns(self) -> dict[str, float]:
        frac = self.examples / np.maximum(self.sizes, 1)
        return {
            "exposed_examples": float(self.round_examples),
            "exposed_examples_cum": float(self.examples.sum()),
            "exposed_examples_cum_max": float(self.examples.max()),
            "exposed_examples_cum_mean": float(self.examples.mean()),
            "exposed_frac_cum_max": float(frac.max()),
            "grad_messages": float(self.round_grads),
            "grad_messages_cum": float(self.grads.sum()),
            "grad_messages_cum_max": float(self.grads.max()),
        }

    def state(self) -> dict[str, Any]:
        return {"examples": self.examples.tolist(), "grads": self.grads.tolist()}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.examples = np.asarray(state["examples"], dtype=np.int64)
        self.grads = np.asarray(state["grads"], dtype=np.int64)
