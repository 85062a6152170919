"""The `system` section: links and devices that turn messages into simulated seconds.

Off by default (profile none). A named profile gives every knob a value; any knob set here
overrides the profile's. A client quantity is a number, or a distribution drawn per client
with the run seed: "uniform(LOW,HIGH)" or "lognormal(MEDIAN,SIGMA)"; a CSV trace (one row
per client) overrides both for the columns it has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fslsage_ray.config.effects import results
from fslsage_ray.config.errors import ConfigError

COMPUTE_MODES = ("flops", "measured")
_DIST = re.compile(r"^\s*(uniform|lognormal)\s*\(\s*([^,()]+)\s*,\s*([^,()]+)\s*\)\s*$")

# What each profile sets. Rates in Mbit/s and GFLOP/s (effective, not peak); latency is one
# way, in ms. The server's link is shared by the transfers in flight at the same moment.
PROFILES: dict[str, dict[str, float]] = {
    "datacenter": {
        "downlink_mbps": 10_000.0,
        "uplink_mbps": 10_000.0,
        "latency_ms": 0.1,
        "client_gflops": 10_000.0,
    },
    "broadband": {
        "downlink_mbps": 100.0,
        "uplink_mbps": 20.0,
        "latency_ms": 10.0,
        "client_gflops": 10_000.0,
    },
    "mobile": {
        "downlink_mbps": 20.0,
        "uplink_mbps": 5.0,
        "latency_ms": 50.0,
        "client_gflops": 2_000.0,  # 5x slower than the server
    },
}
PROFILE_NAMES = ("none", *PROFILES)
CLIENT_KNOBS = ("uplink_mbps", "downlink_mbps", "latency_ms", "client_gflops")


def parse_quantity(value: float | str, where: str) -> tuple[str, float, float]:
    """("fixed", v, 0) or (distribution, a, b); refuses anything else with one line."""
    if isinstance(value, (int, float)):
        if not value > 0:
            raise ConfigError(f"{where} must be > 0, got {value}")
        return ("fixed", float(value), 0.0)
    match = _DIST.match(value)
    if not match:
        raise ConfigError(
            f"{where} must be a number, 'uniform(LOW,HIGH)' or 'lognormal(MEDIAN,SIGMA)', "
            f"got {value!r}"
        )
    name, a, b = match.group(1), match.group(2), match.group(3)
    try:
        lo, hi = float(a), float(b)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} has a parameter that is not a number") from None
    if name == "uniform" and not 0 < lo <= hi:
        raise ConfigError(f"{where}: uniform(LOW,HIGH) needs 0 < LOW <= HIGH, got {value!r}")
    if name == "lognormal" and not (lo > 0 and hi >= 0):
        raise ConfigError(f"{where}: lognormal(MEDIAN,SIGMA) needs MEDIAN > 0, SIGMA >= 0")
    return (name, lo, hi)


@dataclass(frozen=True)
class SystemConfig:
    """Every knob changes the simulated-time columns (or, availability, who takes part)."""

    profile: str = results("none")  # none (off) | datacenter | broadband | mobile
    uplink_mbps: float | str | None = results(None)  # per client; None: the profile's
    downlink_mbps: float | str | None = results(None)
    latency_ms: float | str | None = results(None)  # one way, per message
    client_gflops: float | str | None = results(None)  # compute rate (flops mode)
    trace: str | None = results(None)  # CSV, one row per client (README: columns)
    server_mbps: float = results(100_000.0)  # the server's link, each direction, shared equally
    server_latency_ms: float = results(0.0)  # added to every message
    server_gflops: float = results(10_000.0)
    server_parallel: int = results(1)  # server steps (and alignments) running at once
    compute: str = results("flops")  # flops: FLOPs / rate, reproducible | measured: NOT
    # reproducible
    speed_factor: float = results(1.0)  # measured: simulated = measured seconds / speed_factor
    availability: float = results(1.0)  # chance a client can take part in a round (seeded draw)

    def __post_init__(self) -> None:
        if self.profile not in PROFILE_NAMES:
            raise ConfigError(
                f"system.profile must be one of {PROFILE_NAMES}, got {self.profile!r}"
            )
        for knob in CLIENT_KNOBS:
            value = getattr(self, knob)
            if value is not None:
                parse_quantity(value, f"system.{knob}")
        if self.compute not in COMPUTE_MODES:
            raise ConfigError(
                f"system.compute must be one of {COMPUTE_MODES}, got {self.compute!r}"
            )
        for knob in ("server_mbps", "server_gflops", "speed_factor"):
            if not getattr(self, knob) > 0:
                raise ConfigError(f"system.{knob} must be > 0, got {getattr(self, knob)}")
        if self.server_latency_ms < 0:
            raise ConfigError(
                f"system.server_latency_ms must be >= 0, got {self.server_latency_ms}"
            )
        if self.server_parallel < 1:
            raise ConfigError(f"system.server_parallel must be >= 1, got {self.server_parallel}")
        if not 0 < self.availability <= 1:
            raise ConfigError(f"system.availability must be in (0, 1], got {self.availability}")

    @property
    def enabled(self) -> bool:
        return self.profile != "none"

    def client_quantity(self, knob: str) -> float | str:
        """The knob as set, else the profile's value."""
        value = getattr(self, knob)
        return PROFILES[self.profile][knob] if value is None else value
