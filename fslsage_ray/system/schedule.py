"""Who takes part in each round, and how often each client took part before: one schedule.

The run, `fslsage-ray plan` (bytes) and `fslsage-ray simtime` (simulated time) all read it,
so what a plan or a replay predicts is what the run does. A round's participants are drawn
from (seed, round) alone (algorithm.clients_per_round, algorithms/participation.py); with a
system profile, those of them not available that round stay out (system/devices.py). No
training state enters, so the whole schedule is known before the first round.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fslsage_ray.algorithms.participation import participants
from fslsage_ray.config import Config
from fslsage_ray.system.devices import Device, available, client_devices


@dataclass
class RoundSchedule:
    """Round t's clients, and every client's count of rounds taken part in before t."""

    num_clients: int
    clients_per_round: int | float | None
    seed: int
    devices: Sequence[Device] | None = None  # None: every chosen client takes part
    # How many rounds each client took part in before round `_counted`; advanced one round
    # at a time, since a run asks for its rounds in order.
    _taken: Counter[int] = field(default_factory=Counter, init=False, repr=False)
    _counted: int = field(default=0, init=False, repr=False)

    @classmethod
    def of(
        cls, config: Config, num_clients: int, devices: Sequence[Device] | None = None
    ) -> RoundSchedule:
        """The config's schedule; availability applies when `system` is on (its devices
        drawn here unless given, e.g. a SystemModel's)."""
        if not config.system.enabled:
            devices = None
        elif devices is None:
            devices = client_devices(config.system, num_clients, config.run.seed)
        alg = config.algorithm
        return cls(num_clients, alg.clients_per_round, config.run.seed, devices)

    def clients(self, round_idx: int) -> list[int]:
        """Round `round_idx`'s participants, in id order."""
        chosen = participants(round_idx, self.num_clients, self.clients_per_round, self.seed)
        if self.devices is None:
            return chosen
        return available(round_idx, chosen, list(self.devices), self.seed)

    def rounds_taken_before(self, round_idx: int) -> Counter[int]:
        """How many of rounds 0..round_idx-1 each client took part in (a copy)."""
        if round_idx < self._counted:  # a run went back (a recovery): count again
            self._taken, self._counted = Counter(), 0
        while self._counted < round_idx:
            self._taken.update(self.clients(self._counted))
            self._counted += 1
        return Counter(self._taken)

    def uploaded_before(self, round_idx: int, per_round: Sequence[int]) -> Callable[[int], int]:
        """cid -> samples it uploaded before round `round_idx`, `per_round[cid]` in each
        round it took part in (what fills its alignment buffer)."""
        taken = self.rounds_taken_before(round_idx)
        return lambda cid: taken[cid] * per_round[cid]
