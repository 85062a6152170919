"""Glue between a run and the clock: what one round of an algorithm costs in simulated time.

`SystemModel` is built once per run (devices, FLOPs per sample); `round_work` turns a
round's messages into the clock's input. Used by the simulation (messages booked by the
ledger), by `fslsage-ray simtime` (messages planned from sizes, to replay a finished run
under any profile) and by `fslsage-ray plan --profile` (communication only).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from fslsage_ray.algorithms.base import Algorithm
from fslsage_ray.algorithms.client_view import batch_sizes
from fslsage_ray.config import Config
from fslsage_ray.system.clock import RoundTime, RoundWork, StepWork, round_time
from fslsage_ray.system.devices import Device, ServerDevice, client_devices, server_device
from fslsage_ray.system.events import Message, server_job_steps
from fslsage_ray.system.flops import StepFlops

NO_FLOPS = StepFlops(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # communication only (plan --profile)


def step_work(algorithm: Algorithm, f: StepFlops) -> StepWork:
    if algorithm.waits_for == "full":
        return StepWork(f.full_step, 0.0, 0.0)
    if algorithm.waits_for == "exchange":
        return StepWork(f.client_fwd, f.client_bwd, f.server_step)
    return StepWork(f.client_fwd, f.client_bwd + f.aux_step, f.server_step)


def uploaded_samples(algorithm: Algorithm, n: int, before: int | None = None) -> int:
    """Samples a client of n samples uploads in a round (in its steps before `before`)."""
    per_batch = batch_sizes(n, algorithm.alg.batch_size)
    its = algorithm.upload_iterations(len(per_batch))
    return sum(per_batch[it] for it in its if before is None or it < before)


@dataclass
class SystemModel:
    """One run's devices and FLOPs; `time_round` prices a round."""

    config: Config
    algorithm: Algorithm
    flops: StepFlops
    client_sizes: Sequence[int]
    devices: list[Device]
    server: ServerDevice

    @classmethod
    def build(cls, config: Config, algorithm: Algorithm, flops: StepFlops, client_sizes):
        devices = client_devices(config.system, len(client_sizes), config.run.seed)
        return cls(
            config, algorithm, flops, list(client_sizes), devices, server_device(config.system)
        )

    @cached_property
    def uploads_per_round(self) -> list[int]:
        """Samples each client uploads in a round it takes part in (RoundSchedule's
        `uploaded_before` counts them into its alignment buffer)."""
        return [uploaded_samples(self.algorithm, n) for n in self.client_sizes]

    def align_flops(self, cid: int, buffered: int) -> float:
        """One AM's fitting on `buffered` samples: g* (unless lazy), the epochs, and the
        error measured before and after."""
        a, f = self.config.alignment, self.flops
        g_star = 0.0 if getattr(self.algorithm, "lazy", False) else f.cut_grad
        return buffered * (g_star + a.epochs * f.align + 2 * f.aux_step)

    def round_work(
        self,
        round_idx: int,
        chosen: Sequence[int],
        messages: Sequence[Message],
        uploaded_before: Callable[[int], int] = lambda cid: 0,
    ) -> RoundWork:
        """The clock's input; `uploaded_before(cid)`: samples cid uploaded in earlier rounds
        (they fill its alignment buffer)."""
        alg = self.algorithm
        align_after = server_job_steps(alg, round_idx, chosen)
        align = {}
        if align_after is not None:
            cap = self.config.alignment.buffer_size
            for cid in chosen:
                now = uploaded_samples(alg, self.client_sizes[cid], align_after)
                align[cid] = self.align_flops(cid, min(cap, uploaded_before(cid) + now))
        batch = alg.alg.batch_size
        return RoundWork(
            pattern=alg.waits_for,
            batches={c: batch_sizes(self.client_sizes[c], batch) for c in chosen},
            messages=messages,
            step=step_work(alg, self.flops),
            sequential=alg.sequential_clients or alg.client_major,
            align_after=align_after,
            align_flops=align,
            align_own_only=alg.client_major,
        )

    def time_round(self, work: RoundWork, measured: Mapping[str, object] | None = None):
        """Simulate; with system.compute=measured, `measured` ({"client": {cid: busy_s},
        "server": busy_s}) rescales each device to what it took here (NOT reproducible)."""
        devices, server = self.devices, self.server
        if measured is not None:
            devices, server = self._measured(work, measured)
        return round_time(work, devices, server)

    def _measured(self, work: RoundWork, measured) -> tuple[list[Device], ServerDevice]:
        """Devices whose rates reproduce the measured busy seconds, sped up by speed_factor."""
        speed = self.config.system.speed_factor
        s = work.step
        devices = list(self.devices)
        for cid, busy in measured["client"].items():
            flops = sum(work.batches.get(cid, ())) * (s.client_fwd + s.client_rest)
            if busy > 0 and flops > 0:
                devices[cid] = replace(devices[cid], flops=speed * flops / busy)
        server = self.server
        up = sum(1 for m in work.messages if m.kind == "smashed.up")
        if measured["server"] > 0 and up:
            per_step = measured["server"] / up  # the server's mean step, measured
            server = replace(server, flops=speed * s.server * work_batch(work) / per_step)
        return devices, server


def work_batch(work: RoundWork) -> float:
    """The mean batch of the round's uploads (the server's step size)."""
    sizes = [b for bs in work.batches.values() for b in bs]
    return sum(sizes) / len(sizes) if sizes else 0.0


def sim_columns(result: RoundTime, previous_s: float) -> dict[str, float | int]:
    # Plain Python numbers: rows go into the checkpoint, which loads with weights_only and so
    # refuses numpy scalars (a resumed run with simulated time could not read its checkpoint).
    cid, share = result.slowest
    seconds = float(result.seconds)
    return {
        "sim_round_s": seconds,
        "sim_time_s": float(previous_s) + seconds,
        "sim_slowest_client": int(cid),
        "sim_slowest_share": float(share),
        "sim_server_busy_frac": float(result.server_busy_s) / seconds if seconds else 0.0,
    }
