"""FSL-SAGE (spec: "FSL-SAGE (the method)"): pure PyTorch, no Ray.

Clients train their part through their auxiliary model's gradient estimate and upload every
q-th smashed batch; the server steps once per upload and, every l rounds, fits each AM to the
server's true cut-layer gradients. No gradient ever travels from the server to a client.

Timing of alignment (the spec allows two): this simulator aligns every client after the
round's first upload slot (it = 0). The it = 0 client step still uses the AM the client held
at the start of the round; the aligned AM is used from it = 1 on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fslsage_ray.algorithms.client_view import ClientView, batch_sizes, upload_iterations
from fslsage_ray.algorithms.gradients import (
    alignment_loss,
    gradient_estimate,
    relative_error,
    true_cut_gradient,
)
from fslsage_ray.algorithms.ledger import state_bytes, tensor_nbytes
from fslsage_ray.algorithms.phases import AlignPhase, LocalPhase, Phase
from fslsage_ray.config.schema import AlgorithmConfig, OptimConfig

# send(it, cid, smashed, labels): hands an upload to whatever carries it to the server.
SendUpload = Callable[[int, int, np.ndarray, np.ndarray], None]


def adam(params, lr: float, optim: OptimConfig, weight_decay: float) -> torch.optim.Adam:
    return torch.optim.Adam(
        params, lr=lr, betas=(optim.beta1, optim.beta2), weight_decay=weight_decay
    )


@dataclass
class ClientRoundStats:
    aux_loss_sum: float = 0.0  # the local loss CE(a(z), y) the client descends
    steps: int = 0
    bytes: dict[str, int] = field(default_factory=dict)

    def charge(self, kind: str, nbytes: int) -> None:
        self.bytes[kind] = self.bytes.get(kind, 0) + nbytes


class FslSageClient:
    """One virtual client: its part of the model, its AM copy, optimizer and RNG."""

    def __init__(
        self,
        cid: int,
        view: ClientView,
        client_model: nn.Module,
        aux_model: nn.Module,
        alg: AlgorithmConfig,
        optim: OptimConfig,
        generator: torch.Generator,
        device: torch.device,
        count_labels: bool = False,
    ) -> None:
        self.cid = cid
        self.view = view
        self.model = client_model.to(device)
        self.aux = aux_model.to(device)
        self.alg = alg
        self.device = device
        self.generator = generator
        self.count_labels = count_labels
        # Persistent across rounds: never averaged or reset (spec step 4).
        self.optimizer = adam(self.model.parameters(), optim.lr, optim, optim.weight_decay)
        self._batches: list[np.ndarray] = []
        self.stats = ClientRoundStats()

    @property
    def num_batches(self) -> int:
        return self.view.num_batches(self.alg.batch_size)

    def start_round(self, global_state: Mapping[str, torch.Tensor]) -> None:
        self.model.load_state_dict(global_state)
        self.model.train()
        self.aux.train()  # AMs stay in train mode (batch statistics), as in the authors' runs
        self._batches = self.view.shuffled_batches(self.alg.batch_size, self.generator)
        self.stats = ClientRoundStats()

    def load_aux(self, state: Mapping[str, torch.Tensor]) -> None:
        self.aux.load_state_dict(state)

    def step(self, it: int, send: SendUpload) -> None:
        """One local iteration: forward, maybe upload, step through the AM's estimate."""
        x, y = self.view.batch(self._batches[it], self.generator, self.device)
        smashed = self.model(x)
        if it % self.alg.upload_every == 0:
            z_np = smashed.detach().cpu().numpy()
            y_np = y.cpu().numpy()
            self.stats.charge("smashed.up", tensor_nbytes(z_np))
            if self.count_labels:
                self.stats.charge("labels.up", tensor_nbytes(y_np))
            send(it, self.cid, z_np, y_np)
        g_hat, aux_loss = gradient_estimate(self.aux, smashed, y)
        self.optimizer.zero_grad(set_to_none=True)
        smashed.backward(g_hat)
        self.optimizer.step()
        self.stats.aux_loss_sum += float(aux_loss)
        self.stats.steps += 1

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}


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


@dataclass
class AlignResult:
    state: dict[str, torch.Tensor]
    rel_error_before: float
    rel_error_after: float
    samples: int


class FslSageServer:
    """The main server: one server model, per-client buffers, AMs and AM optimizers."""

    def __init__(
        self,
        server_model: nn.Module,
        aux_models: Mapping[int, nn.Module],
        alg: AlgorithmConfig,
        optim: OptimConfig,
        device: torch.device,
    ) -> None:
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
        self.loss_sum = 0.0
        self.uploads = 0

    def process_upload(self, cid: int, smashed: np.ndarray, labels: np.ndarray) -> float:
        """ONE optimizer step on the server model, then remember the batch for alignment."""
        self.model.train()
        z = torch.as_tensor(np.array(smashed), device=self.device)
        y = torch.as_tensor(np.array(labels, dtype=np.int64), device=self.device)
        z_in = z.clone().requires_grad_(self.alg.lazy)
        loss = F.cross_entropy(self.model(z_in), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        grad_sum = z_in.grad.detach() * len(y) if self.alg.lazy else None
        self.buffers[cid].append(z, y, grad_sum)
        value = float(loss.detach())
        self.loss_sum += value
        self.uploads += 1
        return value

    def _chunks(self, cid: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Fixed alignment batches with their targets g* (same normalisation as g_hat)."""
        buf = self.buffers[cid]
        size = self.alg.align_batch_size
        chunks = []
        for start in range(0, len(buf), size):
            z = buf.smashed[start : start + size]
            y = buf.labels[start : start + size]
            if self.alg.lazy:
                g_star = buf.grad_sums[start : start + size] / len(y)
            else:
                # Non-lazy: recompute with the CURRENT server model, in train mode (so its
                # BatchNorm running statistics move, as in the authors' runs; no step).
                self.model.train()
                g_star, _ = true_cut_gradient(self.model, z, y)
            chunks.append((z, y, g_star))
        return chunks

    def _estimation_error(self, aux: nn.Module, chunks) -> float:
        err, norm = 0.0, 0.0
        for z, y, g_star in chunks:
            g_hat, _ = gradient_estimate(aux, z, y)
            e, n = relative_error(g_hat, g_star)
            err, norm = err + e, norm + n
        return err / norm if norm > 0 else float("nan")

    def align(self, cid: int) -> AlignResult:
        """Fit client cid's AM to the server's true gradients on its buffer (spec step 3)."""
        aux, opt = self.aux[cid], self.aux_optim[cid]
        aux.train()
        chunks = self._chunks(cid)
        before = self._estimation_error(aux, chunks)
        for _ in range(self.alg.align_epochs):
            for z, y, g_star in chunks:
                loss = alignment_loss(aux, z, y, g_star)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        after = self._estimation_error(aux, chunks)
        state = {k: v.detach().cpu().clone() for k, v in aux.state_dict().items()}
        return AlignResult(state, before, after, len(self.buffers[cid]))

    def take_round_stats(self) -> tuple[float, int]:
        """(mean server loss on this round's uploads, number of uploads); resets them."""
        mean = self.loss_sum / self.uploads if self.uploads else float("nan")
        stats = (mean, self.uploads)
        self.loss_sum, self.uploads = 0.0, 0
        return stats


def is_alignment_round(round_idx: int, alg: AlgorithmConfig) -> bool:
    return round_idx % alg.align_every == 0


def round_phases(round_idx: int, alg: AlgorithmConfig) -> list[Phase]:
    if is_alignment_round(round_idx, alg):
        return [LocalPhase(0, 1), AlignPhase(), LocalPhase(1, None)]
    return [LocalPhase(0, None)]


def expected_uploads(num_batches: Mapping[int, int], alg: AlgorithmConfig) -> list[tuple[int, int]]:
    """Every (it, cid) the server will receive this round, in the order it processes them.

    Sorting by iteration first mirrors clients that run in lockstep; processing in this fixed
    order (not arrival order) keeps results identical for any number of actors.
    """
    keys = [
        (it, cid) for cid, k in num_batches.items() for it in upload_iterations(k, alg.upload_every)
    ]
    return sorted(keys)


def plan_round_bytes(
    round_idx: int,
    client_sizes: Sequence[int],
    alg: AlgorithmConfig,
    client_state_bytes: int,
    aux_state_bytes: int,
    smashed_sample_bytes: int,
    count_labels: bool,
) -> dict[str, int]:
    """What round `round_idx` will send, by kind, computed from sizes alone (spec table)."""
    m = len(client_sizes)
    uploaded = 0
    for n_i in client_sizes:
        sizes = batch_sizes(n_i, alg.batch_size)
        uploaded += sum(sizes[it] for it in upload_iterations(len(sizes), alg.upload_every))
    counts = {
        "client_model.down": m * client_state_bytes,
        "client_model.up": m * client_state_bytes,
        "smashed.up": uploaded * smashed_sample_bytes,
    }
    if count_labels:
        counts["labels.up"] = uploaded * 8
    if is_alignment_round(round_idx, alg):
        counts["aux_model.down"] = m * aux_state_bytes
    return counts


__all__ = [
    "AlignResult",
    "AlignmentBuffer",
    "FslSageClient",
    "FslSageServer",
    "expected_uploads",
    "is_alignment_round",
    "plan_round_bytes",
    "round_phases",
    "state_bytes",
]
