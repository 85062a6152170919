"""Several AMs fitted together as one vectorised model (`alignment.group_size` > 1).

The AMs of a group share an architecture, so their parameters stack along a new first
dimension; `torch.func.vmap` runs every AM on its own client's alignment batch in one call
and plain autograd takes both levels of the alignment loss through it (spec: "FSL-SAGE",
step 3). The losses are independent, so the gradient of their sum is each AM's own
gradient, and Adam is elementwise, so one Adam over the stacked tensors takes each AM's own
step: the same maths as fitting one AM at a time, in fewer, larger operations (float
tolerance, tested). BatchNorm running statistics are stacked buffers updated in place, as
one at a time. Members must have the same alignment batches (shapes) and the same Adam step
count; `group_jobs` splits groups where they differ.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from fslsage_ray.algorithms.align_job import AlignJob, AlignOutcome
from fslsage_ray.algorithms.optim import step_and_release
from fslsage_ray.algorithms.snapshot import to_cpu
from fslsage_ray.tasks.compute import autocast_for


def _steps(optim_state: dict[str, Any]) -> int:
    for state in optim_state["state"].values():
        if "step" in state:
            return int(state["step"])
    return 0


def _shape_key(job: AlignJob) -> tuple:
    """What must agree for jobs to stack: chunk shapes and the Adam step count."""
    shapes = tuple(
        (tuple(z.shape), tuple(y.shape), tuple((k, tuple(v.shape)) for k, v in sorted(c.items())))
        for z, y, c, _ in job.chunks
    )
    # Text (a context such as an attention mask) and dropout fit one at a time: the token
    # loss counts targets with a host sync, and per-client dropout draws cannot be batched.
    stackable = job.dropout_seed is None and not any(c for _, _, c, _ in job.chunks)
    return shapes, _steps(job.optim_state), stackable


def group_jobs(jobs: Sequence[AlignJob], size: int) -> list[list[AlignJob]]:
    """Consecutive jobs in client order, `size` at a time, split further where they cannot
    stack (or use dropout, whose per-client draws a vectorised pass cannot reproduce): the
    same groups on any layout."""
    groups: list[list[AlignJob]] = []
    ordered = sorted(jobs, key=lambda j: j.cid)
    for start in range(0, len(ordered), size):
        by_key: dict[tuple, list[AlignJob]] = {}
        for job in ordered[start : start + size]:
            key = _shape_key(job)
            if key[-1]:
                by_key.setdefault(key, []).append(job)
            else:
                groups.append([job])
        groups.extend(by_key.values())
    return groups


@dataclass
class AlignGroupJob:
    """Several clients' alignment jobs, run together wherever there is a free processor.
    `cid` (the first member's) is where a backend hosts it."""

    jobs: list[AlignJob]

    @property
    def cid(self) -> int:
        return self.jobs[0].cid

    def run(self, architecture: nn.Module) -> list[AlignOutcome]:
        """Fit every member from its job's state; `architecture` is any module of the AM's
        shape (only its structure is used)."""
        device = next(architecture.parameters()).device
        return fit_group(architecture, self.jobs, device)


def _stack(states: Sequence[dict[str, torch.Tensor]], names, device) -> dict[str, torch.Tensor]:
    return {n: torch.stack([s[n] for s in states]).to(device) for n in names}


def _stacked_optimizer(
    jobs: Sequence[AlignJob], params: list[torch.Tensor]
) -> torch.optim.Optimizer:
    """One Adam/AdamW over the stacked tensors, with the members' (equal) hyperparameters
    and their moments stacked."""
    template = jobs[0].optim_state
    group = dict(template["param_groups"][0])
    group.pop("params")
    accepted = inspect.signature(torch.optim.Adam).parameters  # AdamW is Adam, decoupled
    optimizer = torch.optim.Adam(params, **{k: v for k, v in group.items() if k in accepted})
    if template["state"]:
        state = {}
        for index in template["state"]:
            member = [job.optim_state["state"][index] for job in jobs]
            state[index] = {
                "step": member[0]["step"].clone(),
                "exp_avg": torch.stack([m["exp_avg"] for m in member]).to(params[0].device),
                "exp_avg_sq": torch.stack([m["exp_avg_sq"] for m in member]).to(params[0].device),
            }
        optimizer.load_state_dict(
            {"state": state, "param_groups": [{**group, "params": list(range(len(params)))}]}
        )
    return optimizer


def fit_group(
    architecture: nn.Module, jobs: Sequence[AlignJob], device: torch.device
) -> list[AlignOutcome]:
    task, epochs = jobs[0].task, jobs[0].epochs
    param_names = [n for n, _ in architecture.named_parameters()]
    buffer_names = [n for n, _ in architecture.named_buffers()]
    states = [job.aux_state for job in jobs]
    params = {n: t.requires_grad_(True) for n, t in _stack(states, param_names, device).items()}
    buffers = _stack(states, buffer_names, device)
    optimizer = _stacked_optimizer(jobs, list(params.values()))
    was_training = architecture.training
    architecture.train()  # AMs stay in train mode (batch statistics), as one at a time

    chunks = [
        tuple(torch.stack([job.chunks[i][part] for job in jobs]).to(device) for part in (0, 1, 3))
        + (
            {
                k: torch.stack([job.chunks[i][2][k] for job in jobs]).to(device)
                for k in jobs[0].chunks[i][2]
            },
        )
        for i in range(len(jobs[0].chunks))
    ]

    def losses(z: torch.Tensor, y: torch.Tensor, context: dict, create_graph: bool):
        """Each member's g_hat on its batch (stacked), differentiable when asked."""
        z = z.detach().requires_grad_(True)

        def one(p, b, zz, yy, ctx):
            return task.loss(functional_call(architecture, (p, b), (zz,), ctx), yy)

        with autocast_for(architecture, z.device.type):  # model.precision, as forward()
            per_member = torch.vmap(one)(params, buffers, z, y, context).float()
        (g_hat,) = torch.autograd.grad(per_member.sum(), z, create_graph=create_graph)
        return g_hat

    def errors() -> list[float]:
        err = torch.zeros(len(jobs), dtype=torch.float64)
        norm = torch.zeros(len(jobs), dtype=torch.float64)
        for z, y, g_star, context in chunks:
            g_hat = losses(z, y, context, create_graph=False)
            dims = tuple(range(1, g_hat.dim()))
            err += (g_hat - g_star).pow(2).sum(dims).double().cpu()
            norm += g_star.pow(2).sum(dims).double().cpu()
        return [float(e / n) if n > 0 else float("nan") for e, n in zip(err, norm, strict=True)]

    try:
        before = errors()
        for _ in range(epochs):
            for z, y, g_star, context in chunks:
                g_hat = losses(z, y, context, create_graph=True)
                loss = (g_hat - g_star).pow(2).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                step_and_release(optimizer)
        after = errors()
    finally:
        architecture.train(was_training)

    outcomes = []
    moments = optimizer.state_dict()
    for g, job in enumerate(jobs):
        aux_state = dict(states[g])
        for n in param_names:
            aux_state[n] = params[n][g].detach()
        for n in buffer_names:
            aux_state[n] = buffers[n][g]
        optim_state = {
            "state": {
                i: {
                    "step": s["step"].clone(),
                    "exp_avg": s["exp_avg"][g],
                    "exp_avg_sq": s["exp_avg_sq"][g],
                }
                for i, s in moments["state"].items()
            },
            "param_groups": job.optim_state["param_groups"],
        }
        outcomes.append(
            AlignOutcome(
                job.cid, to_cpu(aux_state), to_cpu(optim_state), before[g], after[g], "elsewhere"
            )
        )
    return outcomes
