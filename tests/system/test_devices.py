"""Devices from profiles, distributions and traces; availability; the system config's checks."""

from __future__ import annotations

import pytest

from fslsage_ray.config import ConfigError, load_config
from fslsage_ray.system.devices import available, client_devices


def _system(*overrides: str):
    return load_config(None, list(overrides)).system


def test_profiles_set_links_latency_and_compute():
    (mobile,) = client_devices(_system("system.profile=mobile"), 1, seed=0)
    assert (mobile.down_bps, mobile.up_bps) == (20e6 / 8, 5e6 / 8)
    assert mobile.latency_s == pytest.approx(0.05)
    assert mobile.flops * 5 == _system("system.profile=mobile").server_gflops * 1e9
    (bb,) = client_devices(_system("system.profile=broadband"), 1, seed=0)
    assert (bb.down_bps, bb.up_bps, bb.latency_s) == (100e6 / 8, 20e6 / 8, 0.01)


def test_distributions_are_drawn_from_the_seed():
    system = _system("system.profile=broadband", "system.uplink_mbps=uniform(1,9)")
    a, b = client_devices(system, 50, seed=3), client_devices(system, 50, seed=3)
    ups = [d.up_bps * 8 / 1e6 for d in a]
    assert a == b and len(set(ups)) == 50 and 1 <= min(ups) and max(ups) <= 9
    assert client_devices(system, 50, seed=4) != a
    logn = _system("system.profile=mobile", "system.client_gflops=lognormal(100,0.5)")
    assert len({d.flops for d in client_devices(logn, 5, seed=0)}) == 5


def test_a_trace_overrides_its_columns_and_a_bad_one_is_refused(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("client,uplink_mbps,availability\n0,8,1\n1,16,0.5\n")
    system = _system("system.profile=mobile", f"system.trace={trace}")
    devices = client_devices(system, 2, seed=0)
    assert [d.up_bps for d in devices] == [1e6, 2e6]
    assert [d.availability for d in devices] == [1.0, 0.5]
    assert devices[0].down_bps == 20e6 / 8  # not in the trace: the profile's
    with pytest.raises(ConfigError, match="has 2 rows, the run has 3 clients"):
        client_devices(system, 3, seed=0)
    trace.write_text("client,uplink_mbps\n0,8\n1,-1\n")
    with pytest.raises(ConfigError, match="row 1 has an impossible uplink_mbps"):
        client_devices(system, 2, seed=0)
    trace.write_text("client,upload\n0,8\n")
    with pytest.raises(ConfigError, match="unknown column 'upload'"):
        client_devices(system, 1, seed=0)


def test_availability_is_a_seeded_draw_that_never_empties_a_round():
    system = _system("system.profile=mobile", "system.availability=0.5")
    devices = client_devices(system, 10, seed=1)
    rounds = [available(t, list(range(10)), devices, seed=1) for t in range(20)]
    assert rounds == [available(t, list(range(10)), devices, seed=1) for t in range(20)]
    assert all(rounds) and 2 <= sum(map(len, rounds)) / 20 <= 8
    assert len({tuple(r) for r in rounds}) > 1
    rare = client_devices(_system("system.profile=mobile", "system.availability=0.01"), 3, 1)
    assert all(len(available(t, [0, 1, 2], rare, seed=1)) >= 1 for t in range(10))


@pytest.mark.parametrize(
    "override, message",
    [
        ("system.profile=lte", "system.profile must be one of"),
        ("system.uplink_mbps=fast", "system.uplink_mbps must be a number, 'uniform"),
        ("system.latency_ms=uniform(5,1)", "needs 0 < LOW <= HIGH"),
        ("system.server_parallel=0", "system.server_parallel must be >= 1"),
        ("system.compute=wall", "system.compute must be one of"),
        ("system.availability=0", "system.availability must be in"),
    ],
)
def test_impossible_system_settings_are_refused_in_one_line(override, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(None, ["system.profile=mobile", override])
    assert "\n" not in str(info.value)
