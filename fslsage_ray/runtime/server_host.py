"""The server side in one process: upload processing, alignment, evaluation.

For algorithms whose uploads get no reply (FSL-SAGE, CSE-FSL, FSL-AN), uploads are applied
in the fixed order the algorithm gives, whatever order they arrive in (Ray does not keep
an async actor's calls in submission order), so the server is the same for any number of
actors: an upload that arrives early waits in `pending` until every upload before it is
applied. SplitFed clients wait for each reply, so their uploads are applied on arrival.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fslsage_ray.algorithms.evaluate import evaluate_split
from fslsage_ray.algorithms.fsl_sage import AlignJob, AlignOutcome, AlignResult
from fslsage_ray.algorithms.registry import get_algorithm
from fslsage_ray.experiment import WorldSpec, build_aux, build_template

Key = tuple[int, int]  # (iteration, client id)


def _cid(outcome: AlignOutcome) -> int:
    return outcome.cid


class UploadOrderError(RuntimeError):
    """An upload the server was not told to expect (a protocol bug, never bad user input)."""


class ServerHost:
    def __init__(
        self,
        world: WorldSpec,
        test_images: np.ndarray,
        test_labels: np.ndarray,
        client_sizes: Mapping[int, int],
        device: torch.device,
    ) -> None:
        cfg = world.config
        algorithm = get_algorithm(cfg)
        template = build_template(world)
        own_aux = (
            {cid: build_aux(template, cfg.run.seed, cid) for cid in client_sizes}
            if algorithm.server_holds_aux
            else {}
        )
        self.server = algorithm.make_server(template, own_aux, dict(client_sizes), device)
        self.eval_client = copy.deepcopy(algorithm.client_module(template)).to(device)
        self.world = world
        self.device = device
        self.test_images = test_images
        self.test_labels = test_labels
        self.ordered = algorithm.ordered_uploads and cfg.runtime.upload_order == "deterministic"
        self._expected: list[Key] | None = None
        self._next = 0
        self._pending: dict[Key, tuple[np.ndarray, np.ndarray]] = {}
        self._done: set[Key] = set()
        self.busy_s = 0.0

    def begin_round(self, expected: Sequence[Key] | None) -> None:
        if self._pending:
            raise UploadOrderError(f"{len(self._pending)} uploads left over from last round")
        self._expected = sorted(expected) if expected is not None else None
        self._next = 0
        self._done = set()

    def submit(self, it: int, cid: int, smashed: np.ndarray, labels: np.ndarray):
        """Take one upload; returns dL/dz for algorithms that send it back."""
        t0 = time.perf_counter()
        try:
            return self._submit(it, cid, smashed, labels)
        finally:
            self.busy_s += time.perf_counter() - t0

    def _submit(self, it: int, cid: int, smashed: np.ndarray, labels: np.ndarray):
        key = (it, cid)
        if not self.ordered:
            self._done.add(key)
            return self.server.process_upload(cid, smashed, labels)
        if key in self._pending or key in self._done:
            raise UploadOrderError(f"upload {key} received twice")
        self._pending[key] = (smashed, labels)
        expected = self._expected or []
        while self._next < len(expected) and expected[self._next] in self._pending:
            ready = expected[self._next]
            z, y = self._pending.pop(ready)
            self.server.process_upload(ready[1], z, y)
            self._done.add(ready)
            self._next += 1
        return None

    def missing_before(self, it_limit: int | None) -> list[Key]:
        """Expected uploads with iteration < it_limit (None: all) not yet applied."""
        if not self.ordered or self._expected is None:
            return []
        return [
            k
            for k in self._expected
            if (it_limit is None or k[0] < it_limit) and k not in self._done
        ]

    def processed_before(self, it_limit: int | None) -> bool:
        return not self.missing_before(it_limit)

    def align_all(self, participants: Sequence[int] | None = None) -> dict[int, AlignResult]:
        """Fit the AMs of this round's participants (they hold the fresh uploads)."""
        t0 = time.perf_counter()
        chosen = sorted(c for c in self.server.aux if participants is None or c in participants)
        results = {cid: self.server.align(cid) for cid in chosen}
        self.busy_s += time.perf_counter() - t0
        return results

    def prepare_alignment(self, participants: Sequence[int] | None) -> list[AlignJob]:
        """Alignment jobs for the participants, to be fitted elsewhere (in client order)."""
        t0 = time.perf_counter()
        chosen = sorted(c for c in self.server.aux if participants is None or c in participants)
        jobs = [self.server.prepare_alignment(cid) for cid in chosen]
        self.busy_s += time.perf_counter() - t0
        return jobs

    def complete_alignment(self, outcomes: Sequence[AlignOutcome]) -> dict[int, AlignResult]:
        return {o.cid: self.server.complete_alignment(o) for o in sorted(outcomes, key=_cid)}

    def take_busy(self) -> float:
        """Seconds the server computed since the last call (uploads and alignment)."""
        busy, self.busy_s = self.busy_s, 0.0
        return busy

    def end_round(self) -> tuple[float, int]:
        """Round-end server work; returns (mean server loss, uploads) of the round."""
        self.server.end_round()
        return self.server.take_round_stats()

    def snapshot(self) -> dict[str, Any]:
        if self._pending:
            raise UploadOrderError("cannot snapshot the server with uploads still pending")
        return self.server.snapshot()

    def restore(self, snap: Mapping[str, Any]) -> None:
        self._pending.clear()
        self.server.restore(snap)

    def evaluate(self, client_state: Mapping[str, torch.Tensor]) -> tuple[float, float]:
        self.eval_client.load_state_dict(client_state)
        return evaluate_split(
            self.eval_client,
            self.server.eval_head(),
            self.test_images,
            self.test_labels,
            self.world.image_spec,
            self.world.config.run.eval_batch_size,
            self.device,
        )
