"""The probes' side of the server host: what runs there through Backend.inspect.

`measure_on_server` is handed to the server host by reference (a module-level function, so
Ray sends its name, not its code), called with the host itself, and reads its models without
changing them: the client part the host loaded for the round, its evaluation head, the AM a
client holds. Each probe draws from its own generator (run seed, "probe", name, round), and
any use of torch's global random state is undone (fork_rng), so training never sees a probe.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from fslsage_ray.algorithms.base import load_transfer_state
from fslsage_ray.algorithms.registry import get_algorithm
from fslsage_ray.experiment import build_template, initial_aux
from fslsage_ray.probes.base import Probe, ProbeSite
from fslsage_ray.seeding import generator
from fslsage_ray.tasks.base import Arrays

_AM_SHELLS: weakref.WeakKeyDictionary[Any, nn.Module] = weakref.WeakKeyDictionary()


def _am_shell(host: Any) -> nn.Module:
    """A module shaped like the AM, built once per host, to load an averaged AM into."""
    shell = _AM_SHELLS.get(host)
    if shell is None:
        template = build_template(host.world)
        shell = initial_aux(template, host.world.config.run.seed).to(host.device)
        _AM_SHELLS[host] = shell
    return shell


def held_aux(host: Any, parts: Mapping[str, Any], client: int) -> nn.Module | None:
    """The AM a client holds after this round: the averaged `aux` part (CSE-FSL, FSL-AN),
    or the server's AM of `client` (FSL-SAGE, read without changing which AMs are in
    memory); None: the method gives clients none."""
    if "aux" in parts:
        shell = _am_shell(host)
        load_transfer_state(shell, parts["aux"])
        return shell
    if not get_algorithm(host.world.config).server_holds_aux:
        return None
    states = host.server.states
    if client in states.resident:
        return states.resident[client].aux
    entry = states._build(client)  # a fresh AM (never fitted) or one brought back from disk
    if client in states.spilled:
        entry.restore(states.snapshot(client))
    return entry.aux


def measure_on_server(
    host: Any,
    parts: Mapping[str, Any],
    probes: Sequence[Probe],
    probe_set: Arrays,
    round_idx: int,
) -> dict[str, float]:
    """Every server probe's columns for this round."""
    config = host.world.config
    stealing = config.probes.settings("stealing")
    wants_aux = any(p.name == "stealing" for p in probes)
    site = ProbeSite(
        config=config,
        task=host.world.task,
        client=host.eval_client,
        head=host.server.eval_head(),
        aux=held_aux(host, parts, stealing.client) if wants_aux else None,
        probe_set=probe_set,
        test=host.test,
        device=host.device,
    )
    cuda = [host.device] if host.device.type == "cuda" else []
    out: dict[str, float] = {}
    for probe in probes:
        with torch.random.fork_rng(devices=cuda):
            draws = generator(config.run.seed, "probe", probe.name, round_idx)
            out.update(probe.measure(site, draws))
    return out
