"""What every algorithm provides, and what a backend may call (spec: "Baselines").

An algorithm is pure PyTorch: what one client does with a batch, what the server does with
an upload, which model parts the fed server averages, and what each round costs. Backends
(in-process, Ray) run any algorithm through these classes and never look inside.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from fslsage_ray.algorithms.client_view import ClientView, batch_sizes
from fslsage_ray.algorithms.jobs import AM_ERROR_FIGURES, JobReport
from fslsage_ray.algorithms.optim import seed_dropout, steps_taken
from fslsage_ray.algorithms.phases import LocalPhase, Phase
from fslsage_ray.algorithms.snapshot import restore_pair, snapshot_pair, to_cpu
from fslsage_ray.config.schema import Config
from fslsage_ray.models import SplitModel
from fslsage_ray.models.frozen import load_own_state
from fslsage_ray.tasks.base import Batch, Payload, PayloadArray, PayloadSizes, Task

State = dict[str, torch.Tensor]
Parts = dict[str, State]  # e.g. {"client": state} or {"client": ..., "aux": ...}

# Which ledger kind a model part travels as.
PART_KINDS = {"client": "client_model", "aux": "aux_model", "full": "full_model"}


class Channel(Protocol):
    """How a client reaches the server; the runtime supplies one (runtime/channel.py)."""

    # The server is in this process: an upload keeps the client's tensors where they are
    # (on a GPU too) and dL/dz comes back as a tensor; otherwise both cross as numpy. The
    # channel decides it; a client only packs its payload accordingly.
    keeps_tensors: bool

    def upload(self, it: int, cid: int, payload: Payload) -> None:
        """Send and go on: the server's answer, if any, is not awaited."""

    def exchange(self, it: int, cid: int, payload: Payload) -> PayloadArray:
        """Send and wait for dL/dz (SplitFed), as numpy or, in-process, a tensor."""

    def exchange_start(self, it: int, cid: int, payload: Payload) -> Any:
        """Send without waiting (a host sends several clients' batches before it waits for
        the first answer); returns what exchange_finish waits on."""

    def exchange_finish(self, handle: Any) -> PayloadArray:
        """Wait for the answer (dL/dz) to an exchange_start."""


def transfer_state(module: nn.Module, mode: str) -> State:
    """What a model transfer sends (model.transfer): "all" of the state, or "trainable", the
    state without frozen parameters (for LoRA, the adapters: all that can change). For a
    model without frozen parameters the two are the same."""
    state = module.state_dict()
    if mode == "trainable":
        frozen = {
            n for n, p in module.named_parameters(remove_duplicate=False) if not p.requires_grad
        }
        state = {k: v for k, v in state.items() if k not in frozen}
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def load_transfer_state(module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load a transfer_state; only frozen parameters may be missing from it. Frozen ones
    that are there ("all") are checked, never written: a client's frozen base is shared
    with every other copy in its process (models/frozen.py), and no one trains it."""
    load_own_state(module, state, "model transfer")


@dataclass
class ClientRoundStats:
    loss_sum: float = 0.0  # the loss the client itself descends (local or through the server)
    steps: int = 0
    bytes: dict[str, int] = field(default_factory=dict)
    messages: list[tuple[int, str, int]] = field(default_factory=list)  # (step, kind, bytes)

    def charge(self, kind: str, nbytes: int, step: int) -> None:
        """Book one message of local step `step` (the simulated clock replays them)."""
        self.bytes[kind] = self.bytes.get(kind, 0) + int(nbytes)
        self.messages.append((step, kind, int(nbytes)))


class Client(ABC):
    """One virtual client: its model part(s), optimizer and RNG; all state persists."""

    def __init__(self, cid: int, view: ClientView, config: Config, generator, device) -> None:
        self.cid = cid
        self.view = view
        self.config = config
        self.generator = generator
        self.device = device
        self.task: Task = view.task
        self.stats = ClientRoundStats()
        self._batches: list[np.ndarray] = []

    @property
    def num_batches(self) -> int:
        return self.view.num_batches(self.config.algorithm.batch_size)

    def start_round(self, parts: Mapping[str, State]) -> None:
        self.load_parts(parts)
        self._batches = self.view.shuffled_batches(self.config.algorithm.batch_size, self.generator)
        self.stats = ClientRoundStats()

    def next_batch(self, it: int) -> Batch:
        return self.view.batch(self._batches[it], self.generator, self.device)

    def seed_step(self) -> None:
        """Before each step: dropout draws that depend only on (client, step), not on the
        process or the order clients run in."""
        if self.task.stochastic_steps:
            seed_dropout(
                self.config.run.seed,
                "client",
                self.cid,
                steps_taken(self.optimizer),
                device=self.device,
            )

    def send(
        self, it: int, smashed: torch.Tensor, batch: Batch, channel: Channel, wait: bool = False
    ) -> np.ndarray | None:
        """Upload this batch's cut-layer payload (booked here, where it is sent); with
        `wait`, return the server's dL/dz."""
        payload = self.booked_payload(it, smashed, batch, channel.keeps_tensors)
        if not wait:
            channel.upload(it, self.cid, payload)
            return None
        return self.booked_answer(it, channel.exchange(it, self.cid, payload))

    def booked_payload(
        self, it: int, smashed: torch.Tensor, batch: Batch, in_process: bool = False
    ) -> Payload:
        """What goes up for this batch, booked as sent (the same bytes either way)."""
        payload = Payload.of(smashed, batch, to_host=not in_process)
        self.stats.charge("smashed.up", payload.smashed_nbytes, it)
        if self.config.run.count_labels:
            self.stats.charge("labels.up", payload.targets_nbytes, it)
        return payload

    def booked_answer(self, it: int, grad: PayloadArray) -> PayloadArray:
        self.stats.charge("grad.down", grad.nbytes, it)
        return grad

    @abstractmethod
    def load_parts(self, parts: Mapping[str, State]) -> None: ...

    @abstractmethod
    def parts(self) -> Parts:
        """The model parts the fed server averages (keys as in Algorithm.shared_parts)."""

    @abstractmethod
    def step(self, it: int, channel: Channel) -> None: ...

    def end_round(self) -> None:  # noqa: B027 - optional hook
        """Finish anything left of the round's local work (a held step)."""

    def run_job(self, job: Any) -> Any:
        """Do a server job for this client on this client's (idle) processor; see jobs.py."""
        raise NotImplementedError(f"{type(self).__name__} runs no server jobs")

    def accept_delivery(self, delivery: Any) -> None:
        """What a server job sends down to this client (e.g. a fitted AM)."""
        raise NotImplementedError(f"{type(self).__name__} receives nothing from server jobs")

    # Every client keeps `model`, `optimizer`, and, where it has one, `aux`.
    def snapshot(self) -> dict[str, Any]:
        """Everything this client carries between rounds (optimizer moments, AM, RNG)."""
        snap = snapshot_pair(self.model, self.optimizer)
        if getattr(self, "aux", None) is not None:
            snap["aux"] = to_cpu(self.aux.state_dict())
        snap["generator"] = self.generator.get_state()
        return snap

    def restore(self, snap: Mapping[str, Any]) -> None:
        restore_pair(snap, self.model, self.optimizer)
        if "aux" in snap:
            self.aux.load_state_dict(snap["aux"])
        self.generator.set_state(snap["generator"])


class Server(ABC):
    """The main server's side of an algorithm."""

    def __init__(self) -> None:
        self.loss_sum = 0.0
        self.uploads = 0

    @abstractmethod
    def process_upload(self, cid: int, payload: Payload) -> PayloadArray | None:
        """Apply one upload; return dL/dz when the algorithm sends it back."""

    def end_round(self) -> None:  # noqa: B027 - optional hook; most servers have no round end
        """Round-end server work (e.g. averaging per-client copies)."""

    # --- server jobs (algorithms with a ServerJobPhase; see jobs.py) --------------------
    def prepare_jobs(self, cids: Sequence[int]) -> list[Any]:
        """One job per client (each with a `cid`), in client order, runnable anywhere."""
        raise NotImplementedError(f"{type(self).__name__} has no server jobs")

    def run_job(self, job: Any) -> Any:
        """Run a job here, on the server's own copy of what it works on."""
        raise NotImplementedError(f"{type(self).__name__} has no server jobs")

    def complete_job(self, outcome: Any) -> tuple[JobReport, Any | None]:
        """Adopt a job's outcome; (report for the coordinator, delivery for the client or
        None when the client already holds the result)."""
        raise NotImplementedError(f"{type(self).__name__} has no server jobs")

    @abstractmethod
    def eval_head(self) -> nn.Module:
        """What follows the client part at test time."""

    @abstractmethod
    def snapshot(self) -> dict[str, Any]:
        """Everything the server carries between rounds (models, optimizers, buffers)."""

    @abstractmethod
    def restore(self, snap: Mapping[str, Any]) -> None: ...

    # --- per-client entries, checkpointed one at a time (runtime/state_file.py) ----------
    # A server with per-client state (FSL-SAGE's AMs and buffers, SplitFed-MS's copies)
    # splits its snapshot into a shared part and one entry per client, so a checkpoint never
    # needs all entries in memory at once. A server without them is all shared part.
    def snapshot_shared(self) -> dict[str, Any]:
        """What `snapshot` holds apart from the per-client entries."""
        return self.snapshot()

    def entry_ids(self) -> list[int]:
        """Clients whose entry left its initial state (the rest are built again)."""
        return []

    def entry_snapshot(self, cid: int) -> dict[str, Any]:
        raise KeyError(f"{type(self).__name__} keeps no per-client state (client {cid})")

    def restore_shared(self, snap: Mapping[str, Any]) -> None:
        """Back to a `snapshot_shared`, every per-client entry in its initial state."""
        self.restore(snap)

    def restore_entry(self, cid: int, snap: Mapping[str, Any]) -> None:
        raise KeyError(f"{type(self).__name__} keeps no per-client state (client {cid})")

    def record_loss(self, loss: float) -> None:
        self.loss_sum += loss
        self.uploads += 1

    def take_round_stats(self) -> tuple[float, int]:
        """(mean server loss on this round's uploads, number of uploads); resets them."""
        mean = self.loss_sum / self.uploads if self.uploads else float("nan")
        stats = (mean, self.uploads)
        self.loss_sum, self.uploads = 0.0, 0
        return stats


@dataclass(frozen=True)
class ModelSizes:
    client_state_bytes: int  # as a transfer sends it (model.transfer)
    server_state_bytes: int
    aux_state_bytes: int
    payload: PayloadSizes  # one sample's upload (activations, context, targets)
    client_state_all_bytes: int | None = None  # the whole state (model.transfer=all)
    server_state_all_bytes: int | None = None

    def as_if_all(self) -> ModelSizes:
        """The same sizes if every transfer sent the whole state (the authors' count)."""
        return replace(
            self,
            client_state_bytes=self.client_state_all_bytes or self.client_state_bytes,
            server_state_bytes=self.server_state_all_bytes or self.server_state_bytes,
        )

    def part_bytes(self, part: str) -> int:
        if part == "full":
            return self.client_state_bytes + self.server_state_bytes
        return {"client": self.client_state_bytes, "aux": self.aux_state_bytes}[part]


class Algorithm(ABC):
    name: ClassVar[str]
    label: ClassVar[str]
    shared_parts: ClassVar[tuple[str, ...]] = ("client",)  # what the fed server averages
    ordered_uploads: ClassVar[bool] = False  # uploads without replies: apply in a fixed order
    sequential_clients: ClassVar[bool] = False  # clients take turns (SplitFed-SS)
    follows_server_order: ClassVar[bool] = False  # algorithm.server_order changes its order
    returns_gradients: ClassVar[bool] = False
    server_holds_aux: ClassVar[bool] = False  # the server keeps and fits one AM per client
    # False: nothing is ever sent to a main server (FedAvg); on Ray its round bookkeeping and
    # evaluation models then live on the driver, not in a server actor of their own.
    uses_server: ClassVar[bool] = True
    # What a client waits for in simulated time (system/clock.py): "local" (steps through
    # its own AM, uploads not awaited), "exchange" (dL/dz every batch), "full" (no server).
    waits_for: ClassVar[str] = "local"
    # Columns of every round's row for the figures its server jobs report (JobReport.metrics,
    # averaged over clients), in this order, NaN in rounds without them. A figure reported
    # but not named here follows them in the rounds that have it.
    job_figures: ClassVar[tuple[str, ...]] = AM_ERROR_FIGURES

    def __init__(self, config: Config) -> None:
        self.config = config
        self.alg = config.algorithm

    # --- models -------------------------------------------------------------------------
    def client_module(self, template: SplitModel) -> nn.Module:
        """The model a client trains and the fed server averages."""
        return template.client

    def initial_parts(self, template: SplitModel, shared_aux: nn.Module) -> Parts:
        modules = {"client": self.client_module(template), "aux": shared_aux}
        modules["full"] = modules["client"]
        mode = self.config.model.transfer
        return {part: transfer_state(modules[part], mode) for part in self.shared_parts}

    @abstractmethod
    def make_client(
        self,
        cid: int,
        view: ClientView,
        template: SplitModel,
        own_aux: nn.Module,
        generator,
        device,
    ) -> Client: ...

    @abstractmethod
    def make_server(
        self,
        template: SplitModel,
        own_aux: Mapping[int, nn.Module],
        client_sizes: Mapping[int, int],
        device,
    ) -> Server: ...

    # --- schedule -----------------------------------------------------------------------
    @property
    def client_major(self) -> bool:
        """Clients run one after another, each its whole epoch (algorithm.server_order)."""
        return self.follows_server_order and self.alg.server_order == "client_major"

    def round_phases(self, round_idx: int, participants: Sequence[int]) -> list[Phase]:
        if self.sequential_clients or self.client_major:  # clients take turns, in id order
            return [LocalPhase(0, None, (cid,)) for cid in participants]
        return [LocalPhase(0, None)]

    def upload_every(self) -> int | None:
        """Upload when it % q == 0; None: never (FedAvg); 1: every batch."""
        return self.alg.upload_every

    def upload_iterations(self, num_batches: int) -> range:
        q = self.upload_every()
        return range(0) if q is None else range(0, num_batches, q)

    def uploads_per_round(self, client_sizes: Mapping[int, int]) -> dict[int, int]:
        """Uploads each client sends in a round it takes part in (a server's steps)."""
        batch = self.alg.batch_size
        return {cid: len(self.upload_iterations(-(-n // batch))) for cid, n in client_sizes.items()}

    def expected_uploads(self, num_batches: Mapping[int, int]) -> list[tuple[int, int]] | None:
        """Every (it, cid) the server gets this round, in the order it must apply them.

        Sorted by iteration first, as clients running in lockstep would arrive; None where
        the order is fixed anyway (a client waits for each reply before its next upload).
        """
        if not self.ordered_uploads:
            return None
        keys = [(it, cid) for cid, k in num_batches.items() for it in self.upload_iterations(k)]
        if self.client_major:  # client 0's whole epoch, then client 1's, ...
            return sorted(keys, key=lambda key: (key[1], key[0]))
        return sorted(keys)

    # --- accounting ---------------------------------------------------------------------
    def plan_round_bytes(
        self, round_idx: int, client_sizes: Sequence[int], sizes: ModelSizes
    ) -> dict[str, int]:
        """What round `round_idx` sends, by kind, from sizes alone (spec's table)."""
        m = len(client_sizes)
        counts: dict[str, int] = {}
        for part in self.shared_parts:
            kind = PART_KINDS[part]
            counts[f"{kind}.down"] = m * sizes.part_bytes(part)
            counts[f"{kind}.up"] = m * sizes.part_bytes(part)
        uploaded = 0
        for n_i in client_sizes:
            per_batch = batch_sizes(n_i, self.alg.batch_size)
            uploaded += sum(per_batch[it] for it in self.upload_iterations(len(per_batch)))
        per_sample = sizes.payload
        if uploaded:
            counts["smashed.up"] = uploaded * (per_sample.smashed + per_sample.context)
            if self.config.run.count_labels:
                counts["labels.up"] = uploaded * per_sample.targets
            if self.returns_gradients:
                counts["grad.down"] = uploaded * per_sample.smashed
        return counts
