"""Simulated time from sizes alone: a finished run replayed under any profile, and the
communication time of each planned round.

Training does not depend on the system model (availability aside), so a run's messages are
known from its config: `replay_rounds` rebuilds them (events.planned_messages, which a test
holds equal to what the ledger books) and prices them on the profile's devices.
"""

from __future__ import annotations

from typing import Any

from fslsage_ray.algorithms.registry import get_algorithm
from fslsage_ray.config import Config
from fslsage_ray.experiment import WorldSpec, build_template, load_data, planned_sizes
from fslsage_ray.system.events import planned_messages
from fslsage_ray.system.flops import StepFlops, count_step_flops
from fslsage_ray.system.schedule import RoundSchedule
from fslsage_ray.system.timing import NO_FLOPS, SystemModel, sim_columns


def config_flops(config: Config) -> StepFlops:
    """FLOPs per sample of the config's model (reads the data for one batch)."""
    data = load_data(config)
    template = build_template(WorldSpec(config, data.task))
    return count_step_flops(template, data.task, data.train)


def replay_rounds(
    config: Config, rounds: int, flops: StepFlops | None = None, comm_only: bool = False
) -> list[dict[str, Any]]:
    """The sim_* columns of rounds 0..rounds-1 as the simulation would write them."""
    if not config.system.enabled:
        raise ValueError("replay needs a system profile (system.profile is none)")
    client_sizes, sizes = planned_sizes(config)
    algorithm = get_algorithm(config)
    if flops is None:
        flops = NO_FLOPS if comm_only else config_flops(config)
    sm = SystemModel.build(config, algorithm, flops, client_sizes)
    schedule = RoundSchedule.of(config, len(client_sizes), sm.devices)
    rows, total = [], 0.0
    for t in range(rounds):
        chosen = schedule.clients(t)
        members = {c: client_sizes[c] for c in chosen}
        messages = planned_messages(algorithm, t, members, sizes)
        before = schedule.uploaded_before(t, sm.uploads_per_round)
        work = sm.round_work(t, chosen, messages, before)
        row = sim_columns(sm.time_round(work), total)
        total = row["sim_time_s"]
        rows.append({"round": t, **row})
    return rows
