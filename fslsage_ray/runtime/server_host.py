"""The server side in one process: ordered upload processing, alignment, evaluation.

In deterministic mode uploads are applied in the fixed order `expected_uploads` gives,
whatever order they arrive in, so the server model is the same for any number of actors.
An upload that arrives early waits in `pending` until every upload before it is applied.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from fslsage_ray.algorithms.evaluate import evaluate_split
from fslsage_ray.algorithms.fsl_sage import AlignResult, FslSageServer
from fslsage_ray.experiment import WorldSpec, build_aux, build_template

Key = tuple[int, int]  # (iteration, client id)


class UploadOrderError(RuntimeError):
    """An upload the server was not told to expect (a protocol bug, never bad user input)."""


class ServerHost:
    def __init__(
        self,
        world: WorldSpec,
        test_images: np.ndarray,
        test_labels: np.ndarray,
        client_ids: Sequence[int],
        device: torch.device,
    ) -> None:
        cfg = world.config
        template = build_template(world)
        aux = {cid: build_aux(template, cfg.run.seed, cid) for cid in client_ids}
        self.server = FslSageServer(template.server, aux, cfg.algorithm, cfg.optim, device)
        self.eval_client = copy.deepcopy(template.client).to(device)
        self.world = world
        self.device = device
        self.test_images = test_images
        self.test_labels = test_labels
        self.arrival_order = cfg.runtime.upload_order == "arrival"
        self._expected: list[Key] = []
        self._next = 0
        self._pending: dict[Key, tuple[np.ndarray, np.ndarray]] = {}
        self._done: set[Key] = set()

    def begin_round(self, expected: Sequence[Key]) -> None:
        if self._pending:
            raise UploadOrderError(f"{len(self._pending)} uploads left over from last round")
        self._expected = sorted(expected)
        self._next = 0
        self._done = set()

    def submit(self, it: int, cid: int, smashed: np.ndarray, labels: np.ndarray) -> None:
        key = (it, cid)
        if self.arrival_order:
            self.server.process_upload(cid, smashed, labels)
            self._done.add(key)
            return
        if key in self._pending or key in self._done:
            raise UploadOrderError(f"upload {key} received twice")
        self._pending[key] = (smashed, labels)
        while self._next < len(self._expected) and self._expected[self._next] in self._pending:
            ready = self._expected[self._next]
            z, y = self._pending.pop(ready)
            self.server.process_upload(ready[1], z, y)
            self._done.add(ready)
            self._next += 1

    def processed_before(self, it_limit: int | None) -> bool:
        """True once every expected upload with iteration < it_limit (None: all) is applied."""
        return all(
            key in self._done for key in self._expected if it_limit is None or key[0] < it_limit
        )

    def missing_before(self, it_limit: int | None) -> list[Key]:
        return [
            k
            for k in self._expected
            if (it_limit is None or k[0] < it_limit) and k not in self._done
        ]

    def align_all(self) -> dict[int, AlignResult]:
        return {cid: self.server.align(cid) for cid in sorted(self.server.aux)}

    def evaluate(self, client_state: Mapping[str, torch.Tensor]) -> tuple[float, float]:
        self.eval_client.load_state_dict(client_state)
        return evaluate_split(
            self.eval_client,
            self.server.model,
            self.test_images,
            self.test_labels,
            self.world.image_spec,
            self.world.config.run.eval_batch_size,
            self.device,
        )

    def take_round_stats(self) -> tuple[float, int]:
        return self.server.take_round_stats()
