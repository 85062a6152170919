"""FSL-SAGE (spec: "FSL-SAGE (the method)"): pure PyTorch, no Ray.

Clients train their part through their auxiliary model's gradient estimate and upload every
q-th smashed batch; the server steps once per upload and, every l rounds, fits each AM to the
server's true cut-layer gradients. No gradient ever travels from the server to a client.

Timing of alignment (the spec allows two): this simulator aligns every client after the
round's first upload slot (it = 0). The it = 0 client step still uses the AM the client held
at the start of the round; the aligned AM is used from it = 1 on.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fslsage_ray.algorithms.base import (
    Algorithm,
    Channel,
    ModelSizes,
    Server,
    State,
    adam,
)
from fslsage_ray.algorithms.clients import SinglePartClient
from fslsage_ray.algorithms.gradients import (
    alignment_loss,
    gradient_estimate,
    relative_error,
    true_cut_gradient,
)
from fslsage_ray.algorithms.phases import AlignPhase, LocalPhase, Phase
from fslsage_ray.algorithms.snapshot import restore_pair, snapshot_pair, to_cpu
from fslsage_ray.config.schema import AlgorithmConfig, Config


class FslSageClient(SinglePartClient):
    """Trains its part through its AM's gradient estimate; never updates the AM itself.

    Its optimizer persists across rounds: never averaged or reset (spec step 4).
    """

    def __init__(
        self, cid, view, config: Config, generator, device, model: nn.Module, aux: nn.Module
    ) -> None:
        super().__init__(cid, view, config, generator, device, model)
        self.aux = aux.to(device)

    def load_parts(self, parts: Mapping[str, State]) -> None:
        super().load_parts(parts)
        self.aux.train()  # AMs stay in train mode (batch statistics), as in the authors' runs

    def load_aux(self, state: Mapping[str, torch.Tensor]) -> None:
        self.aux.load_state_dict(state)

    def fit_alignment(self, job: AlignJob) -> AlignOutcome:
        """Do the server's fitting of this client's AM on this client's (idle) processor."""
        o = self.config.optim
        return job.run(self.aux, adam(self.aux.parameters(), o.aux_lr, o, o.aux_weight_decay))

    def step(self, it: int, channel: Channel) -> None:
        """One local iteration: forward, maybe upload, step through the AM's estimate."""
        x, y = self.next_batch(it)
        smashed = self.model(x)
        if it % self.config.algorithm.upload_every == 0:
            z_np, y_np = smashed.detach().cpu().numpy(), y.cpu().numpy()
            self.charge_upload(z_np, y_np)
            channel.upload(it, self.cid, z_np, y_np)
        g_hat, aux_loss = gradient_estimate(self.aux, smashed, y)
        self.optimizer.zero_grad(set_to_none=True)
        smashed.backward(g_hat)
        self.optimizer.step()
        self.stats.loss_sum += float(aux_loss)
        self.stats.steps += 1


class AlignmentBuffer:
    """The newest `capacity` uploaded samples of one client (FIFO), kept on the server."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.smashed: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.grad_sums: torch.Tensor | None = None  # lazy variant: per-sample grad of the sum

    def append(self, z: torch.Tensor, y: torch.Tensor, grad_sum: torch.Tensor | None) -> None:
        def keep(old: torch.Tensor | None, new: torch.Tensor) -> torch.Tensor:
            joined = new if old is None else torch.cat([old, new])
            return joined[-self.capacity :]

        self.smashed = keep(self.smashed, z)
        self.labels = keep(self.labels, y)
        if grad_sum is not None:
            self.grad_sums = keep(self.grad_sums, grad_sum)

    def __len__(self) -> int:
        return 0 if self.labels is None else len(self.labels)


def estimation_error(aux: nn.Module, chunks) -> float:
    """||g_hat - g*||^2 / ||g*||^2 pooled over the buffer."""
    err, norm = 0.0, 0.0
    for z, y, g_star in chunks:
        g_hat, _ = gradient_estimate(aux, z, y)
        e, n = relative_error(g_hat, g_star)
        err, norm = err + e, norm + n
    return err / norm if norm > 0 else float("nan")


def fit_aux_model(
    aux: nn.Module, optimizer: torch.optim.Optimizer, chunks, epochs: int
) -> tuple[float, float]:
    """Minimise the sum of squared gradient errors (spec step 3); (error before, after)."""
    aux.train()
    before = estimation_error(aux, chunks)
    for _ in range(epochs):
        for z, y, g_star in chunks:
            loss = alignment_loss(aux, z, y, g_star)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return before, estimation_error(aux, chunks)


@dataclass
class AlignJob:
    """Everything needed to fit one AM, wherever there is a free processor."""

    cid: int
    chunks: list  # [(smashed, labels, g_star)], on the CPU
    aux_state: dict[str, torch.Tensor]
    optim_state: dict[str, Any]
    epochs: int

    def run(self, aux: nn.Module, optimizer: torch.optim.Optimizer) -> AlignOutcome:
        """Fit `aux` (any module of the AM's shape) starting from the job's state."""
        aux.load_state_dict(self.aux_state)
        optimizer.load_state_dict(self.optim_state)
        device = next(aux.parameters()).device
        chunks = [tuple(t.to(device) for t in chunk) for chunk in self.chunks]
        before, after = fit_aux_model(aux, optimizer, chunks, self.epochs)
        return AlignOutcome(
            self.cid, to_cpu(aux.state_dict()), to_cpu(optimizer.state_dict()), before, after
        )


@dataclass
class AlignOutcome:
    cid: int
    aux_state: dict[str, torch.Tensor]
    optim_state: dict[str, Any]
    rel_error_before: float
    rel_error_after: float

    def result(self, samples: int) -> AlignResult:
        return AlignResult(self.aux_state, self.rel_error_before, self.rel_error_after, samples)


@dataclass
class AlignResult:
    state: dict[str, torch.Tensor]
    rel_error_before: float
    rel_error_after: float
    samples: int


class FslSageServer(Server):
    """The main server: one server model, per-client buffers, AMs and AM optimizers."""

    def __init__(
        self,
        server_model: nn.Module,
        aux_models: Mapping[int, nn.Module],
        config: Config,
        device: torch.device,
        lazy: bool = False,
    ) -> None:
        super().__init__()
        self.lazy = lazy
        alg, optim = config.algorithm, config.optim
        self.model = server_model.to(device)
        self.alg = alg
        self.device = device
        self.optimizer = adam(self.model.parameters(), optim.lr, optim, optim.weight_decay)
        self.aux = {cid: m.to(device) for cid, m in aux_models.items()}
        self.aux_optim = {
            cid: adam(m.parameters(), optim.aux_lr, optim, optim.aux_weight_decay)
            for cid, m in self.aux.items()
        }
        self.buffers = {cid: AlignmentBuffer(alg.buffer_size) for cid in self.aux}

    def process_upload(self, cid: int, smashed: np.ndarray, labels: np.ndarray) -> None:
        """ONE optimizer step on the server model, then remember the batch for alignment."""
        self.model.train()
        z = torch.as_tensor(np.array(smashed), device=self.device)
        y = torch.as_tensor(np.array(labels, dtype=np.int64), device=self.device)
        z_in = z.clone().requires_grad_(self.lazy)
        loss = F.cross_entropy(self.model(z_in), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        grad_sum = z_in.grad.detach() * len(y) if self.lazy else None
        self.buffers[cid].append(z, y, grad_sum)
        self.record_loss(float(loss.detach()))

    def _chunks(self, cid: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Fixed alignment batches with their targets g* (same normalisation as g_hat)."""
        buf = self.buffers[cid]
        size = self.alg.align_batch_size
        chunks = []
        for start in range(0, len(buf), size):
            z = buf.smashed[start : start + size]
            y = buf.labels[start : start + size]
            if self.lazy:
                g_star = buf.grad_sums[start : start + size] / len(y)
            else:
                # Non-lazy: recompute with the CURRENT server model, in train mode (so its
                # BatchNorm running statistics move, as in the authors' runs; no step).
                self.model.train()
                g_star, _ = true_cut_gradient(self.model, z, y)
            chunks.append((z, y, g_star))
        return chunks

    def prepare_alignment(self, cid: int) -> AlignJob:
        """Targets g* computed here, in client order (they move the server's BN statistics);
        the fitting itself needs only the job, so it can run anywhere."""
        chunks = [tuple(t.cpu() for t in chunk) for chunk in self._chunks(cid)]
        return AlignJob(
            cid,
            chunks,
            to_cpu(self.aux[cid].state_dict()),
            to_cpu(self.aux_optim[cid].state_dict()),
            self.alg.align_epochs,
        )

    def complete_alignment(self, outcome: AlignOutcome) -> AlignResult:
        """Adopt an AM fitted elsewhere (and its Adam state, which persists)."""
        self.aux[outcome.cid].load_state_dict(outcome.aux_state)
        self.aux_optim[outcome.cid].load_state_dict(outcome.optim_state)
        return outcome.result(len(self.buffers[outcome.cid]))

    def align(self, cid: int) -> AlignResult:
        """Fit client cid's AM to the server's true gradients on its buffer (spec step 3)."""
        chunks = self._chunks(cid)
        before, after = fit_aux_model(
            self.aux[cid], self.aux_optim[cid], chunks, self.alg.align_epochs
        )
        state = to_cpu(self.aux[cid].state_dict())
        return AlignResult(state, before, after, len(self.buffers[cid]))

    def eval_head(self) -> nn.Module:
        return self.model

    def snapshot(self) -> dict[str, Any]:
        snap = snapshot_pair(self.model, self.optimizer)
        snap["aux"] = {c: snapshot_pair(self.aux[c], self.aux_optim[c]) for c in self.aux}
        snap["buffers"] = {c: to_cpu(vars(b)) for c, b in self.buffers.items()}
        return snap

    def restore(self, snap: Mapping[str, Any]) -> None:
        restore_pair(snap, self.model, self.optimizer)
        for cid in self.aux:
            restore_pair(snap["aux"][cid], self.aux[cid], self.aux_optim[cid])
            buf = self.buffers[cid]
            for key, value in snap["buffers"][cid].items():
                setattr(buf, key, value.to(self.device) if torch.is_tensor(value) else value)


def is_alignment_round(round_idx: int, alg: AlgorithmConfig) -> bool:
    return round_idx % alg.align_every == 0


class FslSage(Algorithm):
    name = "fsl_sage"
    label = "FSL-SAGE"
    ordered_uploads = True
    server_holds_aux = True

    def make_client(self, cid, view, template, own_aux, generator, device) -> FslSageClient:
        return FslSageClient(
            cid, view, self.config, generator, device, copy.deepcopy(template.client), own_aux
        )

    def make_server(self, template, own_aux, client_sizes, device) -> FslSageServer:
        return FslSageServer(
            copy.deepcopy(template.server), own_aux, self.config, device, lazy=self.lazy
        )

    @property
    def lazy(self) -> bool:
        return self.alg.lazy

    def round_phases(self, round_idx: int) -> list[Phase]:
        if is_alignment_round(round_idx, self.alg):
            return [LocalPhase(0, 1), AlignPhase(), LocalPhase(1, None)]
        return [LocalPhase(0, None)]

    def plan_round_bytes(
        self, round_idx: int, client_sizes: Sequence[int], sizes: ModelSizes
    ) -> dict[str, int]:
        counts = super().plan_round_bytes(round_idx, client_sizes, sizes)
        if is_alignment_round(round_idx, self.alg):
            counts["aux_model.down"] = len(client_sizes) * sizes.aux_state_bytes
        return counts


class LazyFslSage(FslSage):
    """Aligns to the gradients stored when each batch arrived (algorithm.lazy=true)."""

    name = "fsl_sage_lazy"
    label = "FSL-SAGE (lazy)"

    @property
    def lazy(self) -> bool:
        return True
