"""Server behaviours shared by the baselines (FSL-SAGE's server is in fsl_sage.py)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from fslsage_ray.algorithms.aggregate import sample_weights, weighted_average
from fslsage_ray.algorithms.base import Server
from fslsage_ray.algorithms.optim import dropout_rng, make_optimizer, steps_taken
from fslsage_ray.algorithms.snapshot import restore_pair, snapshot_pair, to_cpu
from fslsage_ray.config.schema import Config
from fslsage_ray.tasks.base import Payload, Task, forward


def server_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    payload: Payload,
    task: Task,
    device: torch.device,
    want_grad: bool,
    dropout_seed: tuple[int, ...] | None = None,
) -> tuple[float, np.ndarray | None]:
    """ONE optimizer step of a server model on an uploaded batch; dL/dz if asked.

    `dropout_seed` (run seed, client id) seeds dropout from where this step is, for models
    that use it."""
    model.train()
    seed = dropout_seed[0] if dropout_seed is not None else None
    tags = (*dropout_seed[1:], steps_taken(optimizer)) if dropout_seed is not None else ()
    z, y, context = payload.tensors(device)
    z = z.requires_grad_(want_grad)
    with dropout_rng(seed, "server", *tags, device=device):
        loss = task.loss(forward(model, z, context), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
    optimizer.step()
    grad = z.grad.detach().cpu().numpy() if want_grad else None
    return float(loss.detach()), grad


class PassThrough(nn.Module):
    """The eval head of a model that is whole on the client: returns its input (the batch's
    context, e.g. an attention mask, is accepted and not needed)."""

    def forward(self, x: torch.Tensor, **context: torch.Tensor) -> torch.Tensor:
        return x


class NoServer(Server):
    """FedAvg has no main server: the client model is the whole model."""

    def process_upload(self, cid, payload):
        raise RuntimeError("FedAvg sends nothing to a main server")

    def eval_head(self) -> nn.Module:
        return PassThrough()

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, snap: Mapping[str, Any]) -> None:
        pass


class SingleServer(Server):
    """One server model stepped by every upload (SplitFed-SS, CSE-FSL)."""

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        config: Config,
        device,
        returns_gradients: bool,
        steps_per_round: int | None = None,
    ) -> None:
        super().__init__()
        self.model = model.to(device)
        self.task = task
        self.device = device
        self.returns_gradients = returns_gradients
        self.dropout_seed = (config.run.seed,) if task.stochastic_steps else None
        o = config.optim
        self.optimizer = make_optimizer(
            self.model.parameters(), o.lr, o, o.weight_decay, steps_per_round
        )

    def process_upload(self, cid, payload):
        loss, grad = server_step(
            self.model,
            self.optimizer,
            payload,
            self.task,
            self.device,
            self.returns_gradients,
            self.dropout_seed,
        )
        self.record_loss(loss)
        return grad

    def eval_head(self) -> nn.Module:
        return self.model

    def snapshot(self) -> dict[str, Any]:
        return snapshot_pair(self.model, self.optimizer)

    def restore(self, snap: Mapping[str, Any]) -> None:
        restore_pair(snap, self.model, self.optimizer)


class ServerCopies(Server):
    """A server-model copy per client, each with its own optimizer (SplitFed-MS, FSL-AN).

    At round end the copies are averaged (weights n_i/n) and every copy starts the next round
    from that average; the optimizers persist. Averaging on the server is not communication.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        client_sizes: Mapping[int, int],
        config: Config,
        device,
        returns_gradients: bool,
        steps_per_round: Mapping[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.device = device
        self.task = task
        self.run_seed = config.run.seed
        self.returns_gradients = returns_gradients
        self.average = model.to(device)
        self.cids = sorted(client_sizes)
        self.sizes = dict(client_sizes)
        self.touched: set[int] = set()
        self.copies = {cid: copy.deepcopy(self.average) for cid in self.cids}
        o = config.optim
        steps = steps_per_round or {}
        self.optimizers = {
            cid: make_optimizer(m.parameters(), o.lr, o, o.weight_decay, steps.get(cid))
            for cid, m in self.copies.items()
        }

    def process_upload(self, cid, payload):
        self.touched.add(cid)
        loss, grad = server_step(
            self.copies[cid],
            self.optimizers[cid],
            payload,
            self.task,
            self.device,
            self.returns_gradients,
            (self.run_seed, cid) if self.task.stochastic_steps else None,
        )
        self.record_loss(loss)
        return grad

    def end_round(self) -> None:
        """Average the copies that trained this round (all of them unless clients sampled)."""
        trained = [c for c in self.cids if c in self.touched]
        self.touched = set()
        if not trained:
            return
        weights = sample_weights([self.sizes[c] for c in trained])
        state = weighted_average([self.copies[c].state_dict() for c in trained], weights)
        self.average.load_state_dict(state)
        for model in self.copies.values():
            model.load_state_dict(state)

    def eval_head(self) -> nn.Module:
        return self.average

    def snapshot(self) -> dict[str, Any]:
        return {
            "average": to_cpu(self.average.state_dict()),
            "copies": {c: snapshot_pair(self.copies[c], self.optimizers[c]) for c in self.cids},
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.average.load_state_dict(snap["average"])
        for cid in self.cids:
            restore_pair(snap["copies"][cid], self.copies[cid], self.optimizers[cid])
