"""The same rounds without Ray: for debugging, tests, and as the reference for Ray's cost."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from fslsage_ray.algorithms.fsl_sage import AlignResult
from fslsage_ray.experiment import WorldSpec
from fslsage_ray.runtime.backend import Backend, Key
from fslsage_ray.runtime.client_host import ClientHost, ClientResult
from fslsage_ray.runtime.server_host import ServerHost, UploadOrderError


class InProcessBackend(Backend):
    def __init__(self, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.host: ClientHost | None = None
        self.server: ServerHost | None = None

    def start(self, world: WorldSpec, train, test, parts: Sequence[np.ndarray]) -> None:
        torch.set_num_threads(world.config.runtime.torch_threads)
        assignment = {cid: idx for cid, idx in enumerate(parts)}
        self.host = ClientHost(world, train[0], train[1], assignment, self.device)
        self.server = ServerHost(world, test[0], test[1], list(assignment), self.device)

    def num_batches(self) -> dict[int, int]:
        return self.host.num_batches()

    def start_round(
        self, global_state: Mapping[str, torch.Tensor], expected: Sequence[Key]
    ) -> None:
        self.server.begin_round(expected)
        self.host.start_round(global_state)

    def run_local(self, start: int, stop: int | None) -> None:
        self.host.run_local(start, stop, self.server.submit)

    def _check_drained(self, it_limit: int | None) -> None:
        missing = self.server.missing_before(it_limit)
        if missing:
            raise UploadOrderError(f"uploads never arrived: {missing[:5]}")

    def align(self, it_limit: int) -> dict[int, AlignResult]:
        self._check_drained(it_limit)
        results = self.server.align_all()
        self.host.load_aux({cid: r.state for cid, r in results.items()})
        return results

    def finish_round(self) -> tuple[list[ClientResult], tuple[float, int]]:
        self._check_drained(None)
        return self.host.finish_round(), self.server.take_round_stats()

    def evaluate(self, client_state: Mapping[str, torch.Tensor]) -> tuple[float, float]:
        return self.server.evaluate(client_state)

    def describe(self) -> str:
        return "in-process (no Ray)"
