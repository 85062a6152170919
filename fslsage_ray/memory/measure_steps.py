"""The algorithm's own pieces run on a few samples: what one step, one server step, one
alignment and one evaluation chunk need beyond model state (probe.py says how it is counted).

The client and the server are built by the algorithm itself (make_client, make_server) from
the run's template, so an algorithm of one's own is measured like the built-in ones; the
client's upload goes to a channel that keeps it and answers a SplitFed exchange with zeros.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from fslsage_ray.algorithms.base import Algorithm, Client, Server
from fslsage_ray.algorithms.client_view import ClientView
from fslsage_ray.algorithms.state_store import _nbytes
from fslsage_ray.config.schema import Config
from fslsage_ray.experiment import initial_aux
from fslsage_ray.memory.probe import Affine, allocation_peak
from fslsage_ray.models import SplitModel
from fslsage_ray.runtime.allocator import torch_threads
from fslsage_ray.seeding import generator
from fslsage_ray.tasks.base import Arrays, Payload

PROBE_BATCH_CAP = 64  # batches up to this are probed at their own size and half of it
# (CPU convolutions pick their algorithm and workspace by batch, so 2 and 4 samples
# extrapolated to 32 gave a ResNet-18 client step 2.5x too small); larger ones at 32 and 64


def probe_sizes(batch: int, rows: int) -> tuple[int, int]:
    """Two sample counts (at least 2: BatchNorm in train mode needs more than one)."""
    top = max(4, min(batch, PROBE_BATCH_CAP, rows // 2))
    return top // 2, top


EVAL_PROBE_ROWS = 256  # evaluation chunks are probed at up to this and twice this many rows


class KeepingChannel:
    """Keeps the client's upload (as tensors, like the in-process channel); a SplitFed
    exchange is answered with a zero dL/dz of the right shape."""

    keeps_tensors = True

    def __init__(self) -> None:
        self.payload: Payload | None = None

    def upload(self, it: int, cid: int, payload: Payload) -> None:
        self.payload = payload

    def exchange(self, it: int, cid: int, payload: Payload) -> torch.Tensor:
        self.payload = payload
        return torch.zeros_like(payload.smashed)


@dataclass(frozen=True)
class StepBytes:
    """Bytes beyond model state at `samples` samples (a batch, or an alignment chunk)."""

    client_step: int  # allocated at once at the peak of one client step (model state aside)
    server_step: int  # the same for one server step on an upload
    align_targets: int  # computing g* for one alignment chunk (FSL-SAGE), else 0
    align_fit: int  # fitting an AM on one chunk (second order), else 0
    align_rows: int  # rows in that chunk: the probe server's buffer


@dataclass
class Probed:
    """The built pieces, after one step on a few samples, for the caller to size."""

    client: Client
    server: Server | None
    payload: Payload | None  # one upload of the larger probe's samples
    lines: dict[str, Affine]  # client_step, server_step, align_targets, align_fit


def _one_size(
    algorithm: Algorithm, config: Config, template: SplitModel, train: Arrays, n: int
) -> tuple[StepBytes, Client, Server | None, Payload | None]:
    cpu = torch.device("cpu")
    view = ClientView(train, np.arange(n), template.task)
    aux = initial_aux(template, config.run.seed)
    client = algorithm.make_client(0, view, template, aux, generator(0, "probe"), cpu)
    client.start_round(algorithm.initial_parts(template, initial_aux(template, config.run.seed)))
    channel = KeepingChannel()
    client.seed_step()
    client.step(0, channel)  # the first step makes the optimizer's moments (model state)
    client.end_round()
    client.start_round(algorithm.initial_parts(template, initial_aux(template, config.run.seed)))
    with allocation_peak() as peak:
        client.seed_step()
        client.step(0, channel)
        client.end_round()
    client_step = peak[0]
    server, server_step, align_targets, align_fit, align_rows = None, 0, 0, 0, n
    if algorithm.uses_server and channel.payload is not None:
        own_aux = {0: initial_aux(template, config.run.seed)}
        server = algorithm.make_server(template, own_aux, {0: n}, cpu)
        payload = channel.payload
        server.process_upload(0, payload)
        with allocation_peak() as peak:
            server.process_upload(0, payload)
        server_step = peak[0]
        if algorithm.server_holds_aux:
            align_rows = len(server.states.get(0).buffer)  # both uploads
            with allocation_peak() as peak:
                jobs = server.prepare_jobs([0])
            align_targets = peak[0] - sum(_nbytes(j.chunks) for j in jobs)  # jobs: own part
            with allocation_peak() as peak:
                for job in jobs:
                    server.run_job(replace(job, epochs=1))
            align_fit = peak[0]
    sizes = StepBytes(client_step, server_step, align_targets, align_fit, align_rows)
    return sizes, client, server, channel.payload


@contextmanager
def run_threads(config: Config) -> Iterator[None]:
    """Probe with the torch threads the run's processes compute with (runtime/allocator.py):
    a step's scratch memory depends on them (measured on the digits: an FSL-SAGE server
    step allocates 1.6 MB with 2 threads, 1.0 MB with the run's 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(torch_threads(config.runtime))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def probe_steps(
    algorithm: Algorithm, config: Config, template: SplitModel, train: Arrays
) -> Probed:
    """One client step, server step and alignment at each of two sample counts
    (probe_sizes); the lines through them, and the pieces built at the larger count."""
    n1, n2 = probe_sizes(config.algorithm.batch_size, len(next(iter(train.values()))))
    with run_threads(config):
        first, *_ = _one_size(algorithm, config, copy.deepcopy(template), train, n1)
        second, client, server, payload = _one_size(algorithm, config, template, train, n2)
    lines = {
        name: Affine.through(n1, getattr(first, name), n2, getattr(second, name))
        for name in ("client_step", "server_step")
    }
    for name in ("align_targets", "align_fit"):  # in rows of the alignment chunk
        r1, r2 = first.align_rows, second.align_rows
        lines[name] = Affine.through(r1, getattr(first, name), r2, getattr(second, name))
    return Probed(client, server, payload, lines)


def eval_chunk_bytes(task: Any, client: nn.Module, head: nn.Module, test: Arrays, rows: int) -> int:
    """What one evaluation batch of `rows` rows allocates at its peak (no graph): measured
    at up to EVAL_PROBE_ROWS and twice that, scaled to `rows`."""
    available = task.num_samples(test)
    r1 = min(rows, EVAL_PROBE_ROWS, available)
    r2 = min(rows, 2 * EVAL_PROBE_ROWS, available)
    cpu = torch.device("cpu")
    client.eval()
    head.eval()
    peaks = []
    for r in dict.fromkeys((r1, r2)):
        with allocation_peak() as peak:
            task.eval_batch_sums(client, head, test, 0, r, cpu)
        peaks.append((r, peak[0]))
    if len(peaks) == 1:
        return int(peaks[0][1] * rows / max(peaks[0][0], 1))
    (a, pa), (b, pb) = peaks
    return Affine.through(a, pa, b, pb).at(rows)
