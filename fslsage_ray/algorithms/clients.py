"""Client behaviours shared by the baselines (FSL-SAGE's own client is in fsl_sage.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from fslsage_ray.algorithms.base import (
    Channel,
    Client,
    Parts,
    State,
    load_transfer_state,
    transfer_state,
)
from fslsage_ray.algorithms.optim import make_optimizer, step_and_release
from fslsage_ray.algorithms.snapshot import to_cpu
from fslsage_ray.tasks.base import PayloadArray, forward


class SinglePartClient(Client):
    """A client training one model of its own, averaged by the fed server as `part`."""

    part: ClassVar[str] = "client"

    def __init__(self, cid, view, config, generator, device, model: nn.Module) -> None:
        super().__init__(cid, view, config, generator, device)
        self.model = model.to(device)
        o = config.optim
        self.optimizer = make_optimizer(
            self.model.parameters(), o.lr, o, o.weight_decay, self.num_batches
        )

    def load_parts(self, parts: Mapping[str, State]) -> None:
        load_transfer_state(self.model, parts[self.part])
        self.model.train()

    def parts(self) -> Parts:
        return {self.part: transfer_state(self.model, self.config.model.transfer)}


class FullModelClient(SinglePartClient):
    """FedAvg: the whole model (client part then server part) trained on the local loss."""

    part = "full"

    def step(self, it: int, channel: Channel) -> None:
        batch = self.next_batch(it)
        loss = self.task.loss(forward(self.model, batch.inputs, batch.context), batch.targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        step_and_release(self.optimizer)
        self.stats.loss_sum += float(loss.detach())
        self.stats.steps += 1


@dataclass
class PendingStep:
    """A step sent but not finished: its activations wait for the server's dL/dz."""

    it: int
    smashed: torch.Tensor
    handle: Any


class GradientReturnClient(SinglePartClient):
    """SplitFed: every batch goes to the server, which answers with dL/dz. A step is one
    call (`step`), or two (`start_step`, `finish_step`) where the channel lets a host send
    several clients' batches before the first answer returns; the arithmetic is the same."""

    def step(self, it: int, channel: Channel) -> None:
        batch = self.next_batch(it)
        smashed = forward(self.model, batch.inputs, batch.context)
        self._descend(smashed, self.send(it, smashed, batch, channel, wait=True))

    def start_step(self, it: int, channel: Channel) -> PendingStep:
        batch = self.next_batch(it)
        smashed = forward(self.model, batch.inputs, batch.context)
        payload = self.booked_payload(it, smashed, batch, channel.keeps_tensors)
        return PendingStep(it, smashed, channel.exchange_start(it, self.cid, payload))

    def finish_step(self, pending: PendingStep, channel: Channel) -> None:
        grad = self.booked_answer(pending.it, channel.exchange_finish(pending.handle))
        self._descend(pending.smashed, grad)

    def _descend(self, smashed: torch.Tensor, grad: PayloadArray) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        smashed.backward(torch.as_tensor(grad, device=self.device))
        step_and_release(self.optimizer)
        self.stats.steps += 1


class LocalLossClient(Client):
    """CSE-FSL and FSL-AN: client part and its AM trained together on CE(a(h(x))).

    Each has its own Adam, as in the authors' code: the client part's with optim.lr and
    weight decay, the AM's with optim.aux_lr and optim.aux_weight_decay (0 by default).
    Uploads go to the server on the algorithm's schedule; nothing comes back.
    """

    def __init__(
        self,
        cid,
        view,
        config,
        generator,
        device,
        model: nn.Module,
        aux: nn.Module,
        upload_every: int,
    ) -> None:
        super().__init__(cid, view, config, generator, device)
        self.model = model.to(device)
        self.aux = aux.to(device)
        self.upload_every = upload_every
        o = config.optim
        steps = self.num_batches
        self.optimizer = make_optimizer(self.model.parameters(), o.lr, o, o.weight_decay, steps)
        self.aux_optimizer = make_optimizer(
            self.aux.parameters(), o.aux_lr, o, o.aux_weight_decay, steps
        )

    def load_parts(self, parts: Mapping[str, State]) -> None:
        load_transfer_state(self.model, parts["client"])
        load_transfer_state(self.aux, parts["aux"])
        self.model.train()
        self.aux.train()

    def parts(self) -> Parts:
        mode = self.config.model.transfer
        return {"client": transfer_state(self.model, mode), "aux": transfer_state(self.aux, mode)}

    def step(self, it: int, channel: Channel) -> None:
        batch = self.next_batch(it)
        smashed = forward(self.model, batch.inputs, batch.context)
        if it % self.upload_every == 0:
            self.send(it, smashed, batch, channel)
        loss = self.task.loss(forward(self.aux, smashed, batch.context), batch.targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.aux_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        step_and_release(self.optimizer)
        step_and_release(self.aux_optimizer)
        self.stats.loss_sum += float(loss.detach())
        self.stats.steps += 1

    def snapshot(self) -> dict[str, Any]:
        snap = super().snapshot()
        snap["aux_optimizer"] = to_cpu(self.aux_optimizer.state_dict())
        return snap

    def restore(self, snap: Mapping[str, Any]) -> None:
        super().restore(snap)
        self.aux_optimizer.load_state_dict(snap["aux_optimizer"])
