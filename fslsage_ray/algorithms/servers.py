"""Server behaviours shared by the baselines (FSL-SAGE's server is in fsl_sage.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fslsage_ray.algorithms.aggregate import RunningAverage, sample_weights, weighted_average
from fslsage_ray.algorithms.base import Server
from fslsage_ray.algorithms.optim import (
    dropout_rng,
    make_optimizer,
    step_and_release,
    steps_taken,
)
from fslsage_ray.algorithms.snapshot import restore_pair, snapshot_pair, to_cpu
from fslsage_ray.algorithms.state_store import StateStore, StateView, budget_bytes
from fslsage_ray.config.schema import Config
from fslsage_ray.models.frozen import copy_sharing_frozen, load_own_state, own_state
from fslsage_ray.tasks.base import Payload, PayloadArray, Task, forward


@dataclass
class ServerStep:
    """One server step on an upload: its loss, the batch as the server took it (its own
    copies, on its device) and, when asked for, dL/dz."""

    loss: float
    batch: tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]  # (z, targets, context)
    cut_grad: torch.Tensor | None

    def answer(self, payload: Payload) -> PayloadArray | None:
        """dL/dz in the form the upload came in: a tensor in one process, numpy between
        processes (the channel decided, runtime/channel.py)."""
        if self.cut_grad is None or isinstance(payload.smashed, torch.Tensor):
            return self.cut_grad
        return self.cut_grad.cpu().numpy()


def server_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    payload: Payload,
    task: Task,
    device: torch.device,
    want_grad: bool,
    dropout_seed: tuple[int, ...] | None = None,
) -> ServerStep:
    """ONE optimizer step of a server model on an uploaded batch (every algorithm's server
    steps through here); dL/dz if asked.

    `dropout_seed` (run seed, then tags such as the client id) seeds dropout from where
    this step is, for models that use it."""
    model.train()
    seed = dropout_seed[0] if dropout_seed is not None else None
    tags = (*dropout_seed[1:], steps_taken(optimizer)) if dropout_seed is not None else ()
    z, y, context = payload.tensors(device)
    z = z.requires_grad_(want_grad)
    with dropout_rng(seed, "server", *tags, device=device):
        loss = task.loss(forward(model, z, context), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
    step_and_release(optimizer)
    grad = z.grad.detach() if want_grad else None
    return ServerStep(float(loss.detach()), (z.detach(), y, context), grad)


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
        step = server_step(
            self.model,
            self.optimizer,
            payload,
            self.task,
            self.device,
            self.returns_gradients,
            self.dropout_seed,
        )
        self.record_loss(step.loss)
        return step.answer(payload)

    def eval_head(self) -> nn.Module:
        return self.model

    def snapshot(self) -> dict[str, Any]:
        return snapshot_pair(self.model, self.optimizer)

    def restore(self, snap: Mapping[str, Any]) -> None:
        restore_pair(snap, self.model, self.optimizer)


class RoundCount:
    """How many rounds the copies have been averaged: a copy's weights saved in round r are
    its own only until that round's average replaces them."""

    def __init__(self) -> None:
        self.value = 0


class ServerCopy:
    """One client's server-model copy and its optimizer. Between rounds every copy equals the
    average, so a copy put aside keeps only its optimizer's state and takes its weights from
    the average when it comes back; one put aside mid-round, after training (participants
    streamed), keeps its weights too, valid until the round's average."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        average: nn.Module,
        rounds: RoundCount,
    ):
        self.model, self.optimizer, self.average = model, optimizer, average
        self.rounds = rounds
        self.trained_in: int | None = None  # the round its weights moved away from the average

    def snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = {"optimizer": to_cpu(self.optimizer.state_dict())}
        if self.trained_in == self.rounds.value:
            snap["model"] = to_cpu(own_state(self.model))
            snap["round"] = torch.tensor(self.trained_in)
        return snap

    def restore(self, snap: Mapping[str, Any]) -> None:
        if "model" in snap and int(snap["round"]) == self.rounds.value:
            load_own_state(self.model, snap["model"])
            self.trained_in = self.rounds.value
        else:
            load_own_state(self.model, own_state(self.average))
        self.optimizer.load_state_dict(snap["optimizer"])


class ServerCopies(Server):
    """A server-model copy per client, each with its own optimizer (SplitFed-MS, FSL-AN).

    At round end the copies are averaged (weights n_i/n) and every copy starts the next round
    from that average; the optimizers persist. Averaging on the server is not communication.
    A copy is made when its client first uploads; idle ones above
    runtime.server_state_budget_gb go to local disk (state_store.py).
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
        self.rounds = RoundCount()
        self.stream = config.runtime.stream_participants
        o = config.optim
        steps = steps_per_round or {}

        def build(cid: int) -> ServerCopy:
            model = copy_sharing_frozen(self.average)
            optimizer = make_optimizer(model.parameters(), o.lr, o, o.weight_decay, steps.get(cid))
            return ServerCopy(model, optimizer, self.average, self.rounds)

        self.states = StateStore(
            build,
            self.cids,
            budget_bytes(config.runtime.server_state_budget_gb),
            prefix="fslsage-server-",
        )

    @property
    def copies(self) -> StateView:
        return StateView(self.states, "model")

    @property
    def optimizers(self) -> StateView:
        return StateView(self.states, "optimizer")

    def process_upload(self, cid, payload):
        self.touched.add(cid)
        state = self.states.get(cid)
        state.trained_in = self.rounds.value
        step = server_step(
            state.model,
            state.optimizer,
            payload,
            self.task,
            self.device,
            self.returns_gradients,
            (self.run_seed, cid) if self.task.stochastic_steps else None,
        )
        if self.stream:
            self.states.release(keep=())
        self.record_loss(step.loss)
        return step.answer(payload)

    def end_round(self) -> None:
        """Average the copies that trained this round (all of them unless clients sampled);
        copies not in memory take the average when they come back. Streaming, the copies
        are added one at a time (a running sum in the same client order: the same bits)."""
        trained = [c for c in self.cids if c in self.touched]
        self.touched = set()
        if trained:
            weights = sample_weights([self.sizes[c] for c in trained])
            if self.stream:
                total = RunningAverage()
                for cid, weight in zip(trained, weights, strict=True):
                    total.add(own_state(self.states.get(cid).model), weight)
                    self.states.release(keep=())
                state = total.result()
            else:
                models = [self.states.get(c).model for c in trained]
                state = weighted_average([own_state(m) for m in models], weights)
            load_own_state(self.average, state)
            for entry in self.states.resident.values():
                load_own_state(entry.model, state)
        self.rounds.value += 1  # weights saved this round are the average's from now on
        self.states.release(keep=())

    def eval_head(self) -> nn.Module:
        return self.average

    def snapshot_shared(self) -> dict[str, Any]:
        return {"average": to_cpu(own_state(self.average))}

    def entry_ids(self) -> list[int]:
        return self.states.built

    def entry_snapshot(self, cid: int) -> dict[str, Any]:
        """A copy's optimizer: between rounds its weights are the average's."""
        return {"optimizer": self.states.snapshot(cid)["optimizer"]}

    def restore_shared(self, snap: Mapping[str, Any]) -> None:
        load_own_state(self.average, snap["average"])
        self.states.reset()

    def restore_entry(self, cid: int, snap: Mapping[str, Any]) -> None:
        self.states.restore(cid, {"optimizer": snap["optimizer"]})
        self.states.release(keep=())  # restoring many: idle ones go to disk as they come

    def snapshot(self) -> dict[str, Any]:
        """The average, and the optimizer of every copy ever made (a copy's weights are the
        average between rounds)."""
        return {
            **self.snapshot_shared(),
            "copies": {c: self.entry_snapshot(c) for c in self.entry_ids()},
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.restore_shared(snap)
        for cid in self.cids:
            if cid in snap["copies"]:
                self.restore_entry(cid, snap["copies"][cid])
