"""Every message of a round with its client, kind, direction, bytes and step.

The ledger books them where they are sent (ledger.Ledger.record); `planned_messages`
predicts the same list from sizes alone, as plan.py predicts the totals, so a finished run's
messages can be replayed under another system profile without training again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fslsage_ray.algorithms.base import PART_KINDS, Algorithm, ModelSizes
from fslsage_ray.algorithms.client_view import batch_sizes
from fslsage_ray.algorithms.phases import LocalPhase, ServerJobPhase

ROUND = -1  # step of a model transfer: down before the first step, up after the last


@dataclass(frozen=True, order=True)
class Message:
    """One message. `step` is the local step it belongs to (an AM sent down by alignment:
    the step that waits for it), or ROUND for the round's model transfers."""

    cid: int
    step: int
    kind: str  # a ledger kind, "<what>.<up|down>"
    nbytes: int

    @property
    def up(self) -> bool:
        return self.kind.endswith(".up")


def sorted_messages(messages: Sequence[Message]) -> list[Message]:
    """The deterministic order the clock replays them in, however they were collected."""
    return sorted(messages)


def server_job_steps(algorithm: Algorithm, round_idx: int, chosen: Sequence[int]) -> int | None:
    """The local step that waits for this round's server jobs (FSL-SAGE's alignment)."""
    stop = None
    for phase in algorithm.round_phases(round_idx, chosen):
        if isinstance(phase, LocalPhase):
            stop = phase.stop
        elif isinstance(phase, ServerJobPhase):
            return stop
    return None


def planned_messages(
    algorithm: Algorithm,
    round_idx: int,
    members: Mapping[int, int],
    sizes: ModelSizes,
) -> list[Message]:
    """The messages of round `round_idx` for clients {cid: samples}, from sizes alone (the
    spec's table, message by message; totals equal Algorithm.plan_round_bytes)."""
    out: list[Message] = []
    per_sample = sizes.payload
    aligned_at = server_job_steps(algorithm, round_idx, sorted(members))
    count_labels = algorithm.config.run.count_labels
    for cid, n in sorted(members.items()):
        for part in algorithm.shared_parts:
            nbytes = sizes.part_bytes(part)
            out += [Message(cid, ROUND, f"{PART_KINDS[part]}.{d}", nbytes) for d in ("down", "up")]
        per_batch = batch_sizes(n, algorithm.alg.batch_size)
        for it in algorithm.upload_iterations(len(per_batch)):
            b = per_batch[it]
            smashed = b * (per_sample.smashed + per_sample.context)
            out.append(Message(cid, it, "smashed.up", smashed))
            if count_labels:
                out.append(Message(cid, it, "labels.up", b * per_sample.targets))
            if algorithm.returns_gradients:
                out.append(Message(cid, it, "grad.down", b * per_sample.smashed))
        if aligned_at is not None:
            out.append(Message(cid, aligned_at, "aux_model.down", sizes.aux_state_bytes))
    return sorted_messages(out)
