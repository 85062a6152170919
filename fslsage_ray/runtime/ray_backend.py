"""Runs the rounds on Ray: client actors sized to the cluster, one async server actor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import ray
import torch

from fslsage_ray.algorithms.base import State
from fslsage_ray.algorithms.fsl_sage import AlignResult
from fslsage_ray.config.schema import ConfigError
from fslsage_ray.experiment import WorldSpec
from fslsage_ray.runtime.actors import ClientActor, ServerActor
from fslsage_ray.runtime.backend import Backend, Key
from fslsage_ray.runtime.client_host import ClientResult
from fslsage_ray.runtime.cluster import cluster_resources, connect
from fslsage_ray.runtime.placement import ActorPlan, plan_actors

# Generous: a phase can hold a whole local epoch of a slow client before the last upload.
UPLOAD_TIMEOUT_S = 3600.0
STARTUP_TIMEOUT_S = 300.0


def _options(request: dict[str, float]) -> dict[str, float]:
    return {"num_cpus": request.get("CPU", 0.0), "num_gpus": request.get("GPU", 0.0)}


class RayBackend(Backend):
    def __init__(self) -> None:
        self.started_ray = False
        self.plan: ActorPlan | None = None
        self.server = None
        self.actors: list = []

    def start(self, world: WorldSpec, train, test, parts: Sequence[np.ndarray]) -> None:
        runtime = world.config.runtime
        self.started_ray = connect(runtime)
        self.plan = plan_actors(runtime, len(parts), cluster_resources())
        # The arrays go to the object store once; every actor reads them zero-copy.
        images_ref, labels_ref = ray.put(train[0]), ray.put(train[1])
        self.server = ServerActor.options(**_options(self.plan.server_request)).remote(
            world, ray.put(test[0]), ray.put(test[1]), {c: len(p) for c, p in enumerate(parts)}
        )
        self.actors = [
            ClientActor.options(**_options(self.plan.actor_request)).remote(
                world, images_ref, labels_ref, {cid: parts[cid] for cid in group}, self.server
            )
            for group in self.plan.groups
        ]
        waits = [self.server.ready.remote()] + [a.num_batches.remote() for a in self.actors]
        ready, _ = ray.wait(waits, num_returns=len(waits), timeout=STARTUP_TIMEOUT_S)
        if len(ready) < len(waits):
            raise ConfigError(
                f"only {len(ready)} of {len(waits)} actors started within {STARTUP_TIMEOUT_S}s; "
                f"the cluster cannot place {self.plan.describe()}"
            )
        ray.get(ready)

    def num_batches(self) -> dict[int, int]:
        merged: dict[int, int] = {}
        for part in ray.get([a.num_batches.remote() for a in self.actors]):
            merged.update(part)
        return merged

    def start_round(self, parts: Mapping[str, State], expected: Sequence[Key] | None) -> None:
        parts_ref = ray.put(dict(parts))  # once in the object store, read by every actor
        ray.get(self.server.begin_round.remote(None if expected is None else list(expected)))
        ray.get([a.start_round.remote(parts_ref) for a in self.actors])

    def run_local(self, start: int, stop: int | None, only: Sequence[int] | None = None) -> None:
        if only is None:
            ray.get([a.run_local.remote(start, stop) for a in self.actors])
            return
        chosen = set(only)
        ray.get(
            [
                actor.run_local.remote(start, stop, [c for c in group if c in chosen])
                for actor, group in zip(self.actors, self.plan.groups, strict=True)
                if chosen.intersection(group)
            ]
        )

    def align(self, it_limit: int) -> dict[int, AlignResult]:
        ray.get(self.server.wait_processed.remote(it_limit, UPLOAD_TIMEOUT_S))
        results: dict[int, AlignResult] = ray.get(self.server.align_all.remote())
        ray.get(
            [
                actor.load_aux.remote({cid: results[cid].state for cid in group})
                for actor, group in zip(self.actors, self.plan.groups, strict=True)
            ]
        )
        return results

    def finish_round(self) -> tuple[list[ClientResult], tuple[float, int]]:
        ray.get(self.server.wait_processed.remote(None, UPLOAD_TIMEOUT_S))
        stats = ray.get(self.server.end_round.remote())
        per_actor = ray.get([a.finish_round.remote() for a in self.actors])
        results = [r for part in per_actor for r in part]
        return sorted(results, key=lambda r: r.cid), stats

    def evaluate(self, client_state: Mapping[str, torch.Tensor]) -> tuple[float, float]:
        return ray.get(self.server.evaluate.remote(dict(client_state)))

    def describe(self) -> str:
        return f"ray: {self.plan.describe()}" if self.plan else "ray (not started)"

    def close(self) -> None:
        for handle in [*self.actors, self.server]:
            if handle is not None:
                ray.kill(handle)
        self.actors, self.server = [], None
        if self.started_ray and ray.is_initialized():
            ray.shutdown()
        self.started_ray = False
