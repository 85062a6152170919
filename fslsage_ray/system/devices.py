"""Each client's links and compute rate, and the server's, resolved once from `system`.

Distributions are drawn per client from the run seed, so every process and every resume
sees the same devices. A trace CSV has one row per client, in client-id order (a `client`
column, if present, must read 0..m-1); its columns override the config for those knobs.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fslsage_ray.config.errors import ConfigError
from fslsage_ray.config.system import CLIENT_KNOBS, SystemConfig, parse_quantity
from fslsage_ray.seeding import derive_seed

TRACE_COLUMNS = (*CLIENT_KNOBS, "availability")


@dataclass(frozen=True)
class Device:
    """One client: links in bytes per second, latency in seconds, compute in FLOP/s."""

    up_bps: float
    down_bps: float
    latency_s: float
    flops: float
    availability: float = 1.0


@dataclass(frozen=True)
class ServerDevice:
    link_bps: float  # each direction, shared equally by the transfers in flight
    latency_s: float
    flops: float
    parallel: int


def mbps(value: float) -> float:
    """Mbit/s -> bytes/s."""
    return value * 1e6 / 8


def draw(spec: float | str, where: str, count: int, seed: int) -> np.ndarray:
    """`count` per-client values of one knob (fixed, or drawn with the run seed)."""
    name, a, b = parse_quantity(spec, where)
    if name == "fixed":
        return np.full(count, a)
    rng = np.random.default_rng(derive_seed(seed, "system", where))
    if name == "uniform":
        return rng.uniform(a, b, size=count)
    return a * np.exp(b * rng.standard_normal(count))  # lognormal with median a


def read_trace(path: str | Path, count: int) -> dict[str, np.ndarray]:
    """The trace's known columns, one value per client; a bad or short trace is refused."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"system.trace: no file {path}")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    header = set(rows[0]) if rows else set()
    unknown = sorted(header - set(TRACE_COLUMNS) - {"client"})
    if unknown:
        raise ConfigError(
            f"system.trace {path}: unknown column {unknown[0]!r}; known: "
            f"client, {', '.join(TRACE_COLUMNS)}"
        )
    if len(rows) < count:
        raise ConfigError(f"system.trace {path} has {len(rows)} rows, the run has {count} clients")
    rows = rows[:count]
    if "client" in header and [r["client"] for r in rows] != [str(c) for c in range(count)]:
        raise ConfigError(f"system.trace {path}: column client must read 0..{count - 1} in order")
    out = {}
    for col in sorted(header & set(TRACE_COLUMNS)):
        try:
            values = np.array([float(r[col]) for r in rows])
        except (TypeError, ValueError):
            raise ConfigError(f"system.trace {path}: column {col} has a non-number") from None
        low_ok = values >= 0 if col in ("latency_ms", "availability") else values > 0
        if not low_ok.all() or (col == "availability" and (values > 1).any()):
            row = int(np.argmin(low_ok)) if not low_ok.all() else int(np.argmax(values > 1))
            raise ConfigError(f"system.trace {path}: row {row} has an impossible {col}")
        out[col] = values
    return out


def client_devices(system: SystemConfig, count: int, seed: int) -> list[Device]:
    """Every client's device: trace column, else the knob (or the profile's value)."""
    trace = read_trace(system.trace, count) if system.trace else {}
    values = {
        knob: trace.get(knob)
        if knob in trace
        else draw(system.client_quantity(knob), f"system.{knob}", count, seed)
        for knob in CLIENT_KNOBS
    }
    avail = trace.get("availability", np.full(count, system.availability))
    return [
        Device(
            up_bps=mbps(values["uplink_mbps"][c]),
            down_bps=mbps(values["downlink_mbps"][c]),
            latency_s=values["latency_ms"][c] / 1000,
            flops=values["client_gflops"][c] * 1e9,
            availability=float(avail[c]),
        )
        for c in range(count)
    ]


def server_device(system: SystemConfig) -> ServerDevice:
    return ServerDevice(
        mbps(system.server_mbps),
        system.server_latency_ms / 1000,
        system.server_gflops * 1e9,
        system.server_parallel,
    )


def available(round_idx: int, chosen: list[int], devices: list[Device], seed: int) -> list[int]:
    """Of the chosen clients, those available this round (a draw from seed and round). When
    none is, the one whose draw came closest takes part, so no round is empty."""
    if all(devices[c].availability >= 1 for c in chosen):
        return list(chosen)
    rng = np.random.default_rng(derive_seed(seed, "availability", round_idx))
    u = rng.random(len(devices))  # one draw per client, whoever is chosen
    margin = {c: u[c] - devices[c].availability for c in chosen}
    on = [c for c in chosen if margin[c] < 0]
    return on or [min(chosen, key=lambda c: (margin[c], c))]
