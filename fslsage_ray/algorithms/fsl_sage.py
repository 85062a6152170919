"""FSL-SAGE (spec: "FSL-SAGE (the method)"): pure PyTorch, no Ray.

Clients train their part through their auxiliary model's gradient estimate and upload every
q-th smashed batch; the server steps once per upload and, every l rounds, fits each AM to the
server's true cut-layer gradients. No gradient ever travels from the server to a client.

Timing of alignment (the spec allows two; `algorithm.server_order` picks): with parallel
clients (`interleaved`, the default) every client is aligned after the round's first upload
slot (it = 0), so its it = 0 step still uses the AM it held at the start of the round and
the aligned AM is used from it = 1 on. In the authors' order (`client_major`) client i is
aligned right after its own first upload, and its it = 0 step waits for that AM (a held
step), so the aligned AM is used from it = 0 on. `alignment.iteration0` overrides either
choice: "before_alignment" in the client-major order is the authors' llm branch (client i's
it = 0 step through its old AM, then the server's step and the fit).

Fitting an AM is a job (align_job.py) that runs on the server or on its client's idle host;
several are fitted together with alignment.group_size > 1 (aux_group.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from fslsage_ray.algorithms.align_job import (
    AlignJob,
    AlignOutcome,
    Chunk,
    Context,
    chunk_to,
    eval_mode,
)
from fslsage_ray.algorithms.aux_group import AlignGroupJob, group_jobs
from fslsage_ray.algorithms.base import Algorithm, Channel, ModelSizes, Server, State
from fslsage_ray.algorithms.clients import SinglePartClient
from fslsage_ray.algorithms.gradients import gradient_estimate, true_cut_gradient
from fslsage_ray.algorithms.jobs import JobReport
from fslsage_ray.algorithms.ledger import state_bytes
from fslsage_ray.algorithms.optim import (
    dropout_rng,
    make_optimizer,
    step_and_release,
    steps_taken,
)
from fslsage_ray.algorithms.phases import LocalPhase, Phase, ServerJobPhase
from fslsage_ray.algorithms.servers import server_step
from fslsage_ray.algorithms.snapshot import restore_pair, snapshot_pair, to_cpu
from fslsage_ray.algorithms.state_store import StateStore, StateView, budget_bytes
from fslsage_ray.config.schema import AlignmentConfig, Config
from fslsage_ray.models.frozen import copy_sharing_frozen
from fslsage_ray.tasks.base import Batch, Payload, Task, forward

__all__ = ["AlignJob", "AlignOutcome", "FslSage", "FslSageClient", "FslSageServer"]


class FslSageClient(SinglePartClient):
    """Trains its part through its AM's gradient estimate; never updates the AM itself.

    Its optimizer persists across rounds: never averaged or reset (spec step 4).
    """

    def __init__(
        self,
        cid,
        view,
        config: Config,
        generator,
        device,
        model: nn.Module,
        aux: nn.Module,
        upload_every: int,
    ) -> None:
        super().__init__(cid, view, config, generator, device, model)
        self.aux = aux.to(device)
        self.upload_every = upload_every  # the algorithm's, as the server expects them
        self._held: tuple[torch.Tensor, Batch] | None = None  # a step waiting for its AM

    def load_parts(self, parts: Mapping[str, State]) -> None:
        super().load_parts(parts)
        self.aux.train()  # AMs stay in train mode (batch statistics), as in the authors' runs

    def accept_delivery(self, delivery: Mapping[str, torch.Tensor]) -> None:
        self.aux.load_state_dict(delivery)

    def run_job(self, job: AlignJob | AlignGroupJob) -> AlignOutcome | list[AlignOutcome]:
        """Do the server's fitting of this client's AM on this client's (idle) processor;
        this client then already holds the fitted AM. A group job fits its members' AMs
        from their states (this AM lends only its shape); they all go down."""
        if isinstance(job, AlignGroupJob):
            return job.run(self.aux)
        o = self.config.optim
        optimizer = make_optimizer(self.aux.parameters(), o.aux_lr, o, o.aux_weight_decay)
        return job.run(self.aux, optimizer, where="client")

    def step(self, it: int, channel: Channel, hold: bool = False) -> None:
        """One local iteration: forward, maybe upload, step through the AM's estimate.

        With `hold`, the step through the AM waits for the client's next call (the AM may
        be replaced in between: server_order=client_major)."""
        self._take_held_step()
        batch = self.next_batch(it)
        smashed = forward(self.model, batch.inputs, batch.context)
        if it % self.upload_every == 0:
            self.send(it, smashed, batch, channel)
        if hold:
            self._held = (smashed, batch)
            return
        self._descend(smashed, batch)

    def end_round(self) -> None:
        self._take_held_step()

    def _take_held_step(self) -> None:
        """The held step, if any, through the AM this client holds now."""
        if self._held is not None:
            smashed, batch = self._held
            self._held = None
            self._descend(smashed, batch)

    def _descend(self, smashed: torch.Tensor, batch: Batch) -> None:
        g_hat, aux_loss = gradient_estimate(
            self.aux, smashed, batch.targets, self.task, batch.context
        )
        self.optimizer.zero_grad(set_to_none=True)
        smashed.backward(g_hat)
        step_and_release(self.optimizer)
        self.stats.loss_sum += float(aux_loss)
        self.stats.steps += 1


def _keep(old: torch.Tensor | None, new: torch.Tensor, capacity: int) -> torch.Tensor:
    joined = new if old is None else torch.cat([old, new])
    return joined[-capacity:]


class AlignmentBuffer:
    """The newest `capacity` uploaded samples of one client (FIFO), kept on the server."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.smashed: torch.Tensor | None = None
        self.targets: torch.Tensor | None = None
        self.context: Context = {}
        self.grad_sums: torch.Tensor | None = None  # lazy variant: per-sample grad of the sum

    def append(
        self, z: torch.Tensor, y: torch.Tensor, context: Context, grad_sum: torch.Tensor | None
    ) -> None:
        self.smashed = _keep(self.smashed, z, self.capacity)
        self.targets = _keep(self.targets, y, self.capacity)
        self.context = {k: _keep(self.context.get(k), v, self.capacity) for k, v in context.items()}
        if grad_sum is not None:
            self.grad_sums = _keep(self.grad_sums, grad_sum, self.capacity)

    def rows(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor, Context]:
        context = {k: v[start:stop] for k, v in self.context.items()}
        return self.smashed[start:stop], self.targets[start:stop], context

    def __len__(self) -> int:
        return 0 if self.targets is None else len(self.targets)

    def snapshot(self) -> dict[str, Any]:
        return to_cpu(vars(self))

    def restore(self, snap: Mapping[str, Any], device: torch.device) -> None:
        snap = dict(snap)
        if "labels" in snap:  # checkpoints written before the task layer
            snap["targets"] = snap.pop("labels")
        for key, value in snap.items():
            if torch.is_tensor(value):
                value = value.to(device)
            elif isinstance(value, Mapping):
                value = {k: v.to(device) for k, v in value.items()}
            setattr(self, key, value)


class AlignState:
    """One client's state on the FSL-SAGE server: its AM, the AM's optimizer, its buffer."""

    def __init__(
        self,
        aux: nn.Module,
        aux_optim: torch.optim.Optimizer,
        buffer: AlignmentBuffer,
        device: torch.device,
    ) -> None:
        self.aux, self.aux_optim, self.buffer, self.device = aux, aux_optim, buffer, device

    def snapshot(self) -> dict[str, Any]:
        return {"aux": snapshot_pair(self.aux, self.aux_optim), "buffer": self.buffer.snapshot()}

    def restore(self, snap: Mapping[str, Any]) -> None:
        restore_pair(snap["aux"], self.aux, self.aux_optim)
        self.buffer.restore(snap["buffer"], self.device)


class FslSageServer(Server):
    """The main server: one server model, per-client buffers, AMs and AM optimizers."""

    def __init__(
        self,
        server_model: nn.Module,
        aux_models: Mapping[int, nn.Module],
        task: Task,
        config: Config,
        device: torch.device,
        lazy: bool = False,
        steps_per_round: int | None = None,
    ) -> None:
        super().__init__()
        self.lazy = lazy
        self.task = task
        self.alignment = config.alignment
        self.dropout_seed = config.run.seed if task.stochastic_steps else None
        optim = config.optim
        self.model = server_model.to(device)
        self.device = device
        self.optimizer = make_optimizer(
            self.model.parameters(), optim.lr, optim, optim.weight_decay, steps_per_round
        )

        def build(cid: int) -> AlignState:
            aux = aux_models[cid].to(device)
            aux_optim = make_optimizer(
                aux.parameters(), optim.aux_lr, optim, optim.aux_weight_decay
            )
            return AlignState(aux, aux_optim, AlignmentBuffer(self.alignment.buffer_size), device)

        # Per client: built on first use, idle ones spilled above the budget (state_store.py);
        # streaming, this round's participants too, after each upload, job or adoption.
        self.states = StateStore(
            build,
            aux_models,
            budget_bytes(config.runtime.server_state_budget_gb),
            prefix="fslsage-server-",
        )
        self.stream = config.runtime.stream_participants

    def _let_go(self) -> None:
        if self.stream:
            self.states.release(keep=())

    def end_round(self) -> None:
        self.states.release(keep=())

    @property
    def aux(self) -> StateView:
        return StateView(self.states, "aux")

    @property
    def aux_optim(self) -> StateView:
        return StateView(self.states, "aux_optim")

    @property
    def buffers(self) -> StateView:
        return StateView(self.states, "buffer")

    def process_upload(self, cid: int, payload: Payload) -> None:
        """ONE optimizer step on the server model, then remember the batch for alignment
        (lazy: with the gradient it gave now)."""
        seed = None if self.dropout_seed is None else (self.dropout_seed,)
        step = server_step(
            self.model, self.optimizer, payload, self.task, self.device, self.lazy, seed
        )
        z, y, context = step.batch
        grad_sum = step.cut_grad * self.task.loss_count(y) if self.lazy else None
        self.states.get(cid).buffer.append(z, y, context, grad_sum)
        self._let_go()
        self.record_loss(step.loss)

    def _chunks(self, cid: int) -> list[Chunk]:
        """Fixed alignment batches with their targets g* (same normalisation as g_hat)."""
        buf = self.states.get(cid).buffer
        size = self.alignment.batch_size
        chunks = []
        for start in range(0, len(buf), size):
            z, y, context = buf.rows(start, start + size)
            if self.lazy:
                g_star = buf.grad_sums[start : start + size] / self.task.loss_count(y)
            else:
                # Non-lazy: recompute with the CURRENT server model, in train mode (so its
                # BatchNorm running statistics move, as in the authors' runs; no step).
                self.model.train()
                step = steps_taken(self.optimizer)
                with dropout_rng(self.dropout_seed, "g*", cid, start, step, device=self.device):
                    g_star, _ = true_cut_gradient(self.model, z, y, self.task, context)
            chunks.append((z, y, context, g_star))
        return chunks

    def _eval_targets(self, cid: int) -> list[torch.Tensor]:
        """g* of every alignment batch with the server in eval mode (dropout off), for the
        eval-mode error figure only: no BatchNorm statistic moves and no random number is
        drawn (eval_mode keeps the generators as they were), so training is unchanged."""
        buf = self.states.get(cid).buffer
        size = self.alignment.batch_size
        targets = []
        with eval_mode(self.model):
            for start in range(0, len(buf), size):
                z, y, context = buf.rows(start, start + size)
                g_star, _ = true_cut_gradient(self.model, z, y, self.task, context)
                targets.append(g_star.cpu())
        return targets

    def prepare_jobs(self, cids: Sequence[int]) -> list[AlignJob | AlignGroupJob]:
        """Targets g* computed here, in client order (they move the server's BN statistics);
        the fitting itself needs only the job, so it can run anywhere. With
        alignment.group_size > 1, groups of jobs fitted together (aux_group.py)."""
        jobs = []
        for cid in sorted(cids):
            if cid not in self.states:
                continue
            chunks = [chunk_to(chunk, torch.device("cpu")) for chunk in self._chunks(cid)]
            state = self.states.get(cid)
            aux, aux_optim = to_cpu(state.aux.state_dict()), to_cpu(state.aux_optim.state_dict())
            jobs.append(
                AlignJob(
                    cid,
                    chunks,
                    aux,
                    aux_optim,
                    self.alignment.epochs,
                    self.task,
                    self.dropout_seed,
                    self._eval_targets(cid) if self.dropout_seed is not None else None,
                )
            )
            self._let_go()
        if self.alignment.group_size == 1:
            return jobs
        groups = group_jobs(jobs, self.alignment.group_size)
        return [g[0] if len(g) == 1 else AlignGroupJob(g) for g in groups]

    def run_job(self, job: AlignJob | AlignGroupJob) -> AlignOutcome | list[AlignOutcome]:
        """Fit client cid's AM here, on the server's own copy (spec step 3)."""
        state = self.states.get(job.cid)
        if isinstance(job, AlignGroupJob):
            outcome = job.run(state.aux)
        else:
            outcome = job.run(state.aux, state.aux_optim, where="server")
        self._let_go()
        return outcome

    def complete_job(self, outcome: AlignOutcome) -> tuple[JobReport, Any | None]:
        """Adopt an AM fitted elsewhere (and its Adam state, which persists); the AM goes
        down to its client unless the client fitted it."""
        if outcome.where != "server":
            state = self.states.get(outcome.cid)
            state.aux.load_state_dict(outcome.aux_state)
            state.aux_optim.load_state_dict(outcome.optim_state)
            self._let_go()
        report = JobReport(
            outcome.cid,
            {"aux_model.down": state_bytes(outcome.aux_state)},
            outcome.figures(),
        )
        return report, None if outcome.where == "client" else outcome.aux_state

    def eval_head(self) -> nn.Module:
        return self.model

    def snapshot_shared(self) -> dict[str, Any]:
        return snapshot_pair(self.model, self.optimizer)

    def entry_ids(self) -> list[int]:
        return self.states.built

    def entry_snapshot(self, cid: int) -> dict[str, Any]:
        return self.states.snapshot(cid)  # {"aux": AM and its optimizer, "buffer": ...}

    def restore_shared(self, snap: Mapping[str, Any]) -> None:
        restore_pair(snap, self.model, self.optimizer)
        self.states.reset()

    def restore_entry(self, cid: int, snap: Mapping[str, Any]) -> None:
        self.states.restore(cid, snap)
        self.states.release(keep=())  # restoring many: idle ones go to disk as they come

    def snapshot(self) -> dict[str, Any]:
        """The server model, and the per-client state of clients that ever used it (one that
        never did is in its initial state, built again on use)."""
        snap = self.snapshot_shared()
        states = {c: self.entry_snapshot(c) for c in self.entry_ids()}
        snap["aux"] = {c: s["aux"] for c, s in states.items()}
        snap["buffers"] = {c: s["buffer"] for c, s in states.items()}
        return snap

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.restore_shared(snap)
        for cid in self.states.cids:
            if cid in snap["aux"]:
                self.restore_entry(cid, {"aux": snap["aux"][cid], "buffer": snap["buffers"][cid]})


def is_alignment_round(round_idx: int, alignment: AlignmentConfig) -> bool:
    return round_idx % alignment.every == 0


class FslSage(Algorithm):
    name = "fsl_sage"
    label = "FSL-SAGE"
    ordered_uploads = True
    server_holds_aux = True
    follows_server_order = True

    def make_client(self, cid, view, template, own_aux, generator, device) -> FslSageClient:
        return FslSageClient(
            cid,
            view,
            self.config,
            generator,
            device,
            copy_sharing_frozen(template.client),
            own_aux,
            upload_every=self.upload_every(),
        )

    def make_server(self, template, own_aux, client_sizes, device) -> FslSageServer:
        return FslSageServer(
            copy_sharing_frozen(template.server),
            own_aux,
            template.task,
            self.config,
            device,
            lazy=self.lazy,
            steps_per_round=sum(self.uploads_per_round(client_sizes).values()),
        )

    @property
    def lazy(self) -> bool:
        return self.config.alignment.lazy

    def round_phases(self, round_idx: int, participants: Sequence[int]) -> list[Phase]:
        if not is_alignment_round(round_idx, self.config.alignment):
            return super().round_phases(round_idx, participants)
        hold = self.first_step_waits_for_alignment
        if not self.client_major:
            return [
                LocalPhase(0, 1, hold_last=hold),
                ServerJobPhase("aligning AMs"),
                LocalPhase(1, None),
            ]
        # The authors' order: client i uploads its first batch, the server steps on it and
        # fits AM_i with that server model; client i's first step uses AM_i (their master
        # branch) or, with alignment.iteration0=before_alignment, the AM it held (their llm).
        phases: list[Phase] = []
        for cid in participants:
            only = (cid,)
            phases += [
                LocalPhase(0, 1, only, hold_last=hold),
                ServerJobPhase("aligning AMs", only),
                LocalPhase(1, None, only),
            ]
        return phases

    @property
    def first_step_waits_for_alignment(self) -> bool:
        """Whether a client's it = 0 step of an alignment round goes through the fitted AM
        (alignment.iteration0; "auto": only in the client-major order, as before)."""
        chosen = self.config.alignment.iteration0
        if chosen == "auto":
            return self.client_major
        return chosen == "after_alignment"

    def plan_round_bytes(
        self, round_idx: int, client_sizes: Sequence[int], sizes: ModelSizes
    ) -> dict[str, int]:
        counts = super().plan_round_bytes(round_idx, client_sizes, sizes)
        if is_alignment_round(round_idx, self.config.alignment):
            counts["aux_model.down"] = len(client_sizes) * sizes.aux_state_bytes
        return counts


class LazyFslSage(FslSage):
    """Aligns to the gradients stored when each batch arrived (alignment.lazy=true)."""

    name = "fsl_sage_lazy"
    label = "FSL-SAGE (lazy)"

    @property
    def lazy(self) -> bool:
        return True
