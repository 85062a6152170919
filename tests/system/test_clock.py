"""Exact round times, worked out by hand, for every method (no Ray, no training).

Two clients (bytes/s, seconds, FLOP/s):
  c0: down 1000, up 500, latency 0.1, 100 FLOP/s
  c1: down 500,  up 250, latency 0.2,  50 FLOP/s
Server: 1000 FLOP/s, one slot, a link too fast to matter, no latency of its own.
Each client: 2 samples, batch 1 (K = 2). Model parts: client 1000 B, server 3000 B, AM 500 B;
smashed 100 B per sample (dL/dz the same). FLOPs per sample: client forward 10, client
backward 20, server step 100, AM step 30; alignment: g* 100, one epoch 170.
"""

from __future__ import annotations

import pytest

from fslsage_ray.algorithms.base import ModelSizes
from fslsage_ray.algorithms.registry import get_algorithm
from fslsage_ray.config import load_config
from fslsage_ray.system.devices import Device, ServerDevice
from fslsage_ray.system.events import planned_messages
from fslsage_ray.system.flops import StepFlops
from fslsage_ray.system.timing import SystemModel
from fslsage_ray.tasks.base import PayloadSizes

SIZES = ModelSizes(1000, 3000, 500, PayloadSizes(smashed=100, context=0, targets=8))
FLOPS = StepFlops(10.0, 20.0, 100.0, 30.0, align=170.0, cut_grad=100.0)
DEVICES = [Device(500.0, 1000.0, 0.1, 100.0), Device(250.0, 500.0, 0.2, 50.0)]
FAST = ServerDevice(link_bps=1e15, latency_s=0.0, flops=1000.0, parallel=1)


def model(method: str, sizes=(2, 2), server=FAST, devices=DEVICES, *extra: str) -> SystemModel:
    config = load_config(
        None,
        [
            f"algorithm.name={method}",
            "algorithm.num_clients=2",
            "algorithm.batch_size=1",
            "algorithm.upload_every=2",
            "alignment.every=5",
            "alignment.epochs=1",
            *extra,
        ],
    )
    return SystemModel(config, get_algorithm(config), FLOPS, list(sizes), list(devices), server)


def seconds(sm: SystemModel, round_idx: int = 1, chosen=(0, 1)):
    members = {c: sm.client_sizes[c] for c in chosen}
    messages = planned_messages(sm.algorithm, round_idx, members, SIZES)
    return sm.time_round(sm.round_work(round_idx, chosen, messages))


def test_fedavg_sends_whole_models_and_steps_locally():
    # Full model 4000 B, step 10 + 20 + 100 = 130 FLOPs.
    # c0: down 4000/1000 + 0.1 = 4.1; 2 steps of 1.3 -> 6.7; up 4000/500 = 8 + 0.1 -> 14.8
    # c1: down 8 + 0.2 = 8.2; 2 steps of 2.6 -> 13.4; up 16 + 0.2 -> 29.6
    result = seconds(model("fedavg"))
    assert result.client_s == pytest.approx({0: 14.8, 1: 29.6})
    assert result.seconds == pytest.approx(29.6)
    assert result.slowest == (1, pytest.approx(1.0))


def test_splitfed_ms_waits_for_every_gradient():
    # c0: down 1 + 0.1 = 1.1; fwd 0.1 -> 1.2; smashed 0.2 + 0.1 -> 1.5; server 0.1 -> 1.6;
    #     grad 0.1 + 0.1 -> 1.8; bwd 0.2 -> 2.0; fwd -> 2.1; up -> 2.4; server -> 2.5;
    #     grad -> 2.7; bwd -> 2.9; model up 2 + 0.1 -> 5.0
    # c1: down 2 + 0.2 = 2.2; fwd 0.2 -> 2.4; up 0.4 + 0.2 -> 3.0; server -> 3.1;
    #     grad 0.2 + 0.2 -> 3.5; bwd 0.4 -> 3.9; fwd -> 4.1; up -> 4.7; server -> 4.8;
    #     grad -> 5.2; bwd -> 5.6; model up 4 + 0.2 -> 9.8
    result = seconds(model("sflv1"))
    assert result.client_s == pytest.approx({0: 5.0, 1: 9.8})
    assert result.seconds == pytest.approx(9.8)
    assert result.server_busy_s == pytest.approx(0.4)


def test_splitfed_ss_clients_take_turns():
    # c0 as in SplitFed-MS (last step done at 2.9, model up arrives at 5.0).
    # c1 downloads meanwhile (2.2) but starts at 2.9: fwd -> 3.1; up -> 3.7; server -> 3.8;
    #     grad -> 4.2; bwd -> 4.6; fwd -> 4.8; up -> 5.4; server -> 5.5; grad -> 5.9;
    #     bwd -> 6.3; model up 4 + 0.2 -> 10.5
    result = seconds(model("sflv2"))
    assert result.client_s == pytest.approx({0: 5.0, 1: 10.5})
    assert result.seconds == pytest.approx(10.5)


def test_cse_fsl_does_not_wait_for_its_upload():
    # Parts: client 1000 B and AM 500 B, down and up; upload at step 0 only (q = 2);
    # a step is fwd 10, then AM 30 + bwd 20.
    # c0: client down 1.0 (arrives 1.1), AM down 0.5 -> link 1.5, arrives 1.6; fwd -> 1.7
    #     (smashed up 1.7-1.9, arrives 2.0, server 2.0-2.1); rest 0.5 -> 2.2; step 1 -> 2.8;
    #     client up 2.8-4.8 (4.9), AM up 4.8-5.8 -> 5.9
    # c1: client down 2.0 (2.2), AM down 2.0-3.0 -> 3.2; fwd 0.2 -> 3.4 (upload arrives 4.0,
    #     server 4.0-4.1); rest 1.0 -> 4.4; step 1 -> 5.6; client up 5.6-9.6, AM up
    #     9.6-11.6 -> 11.8
    result = seconds(model("cse_fsl"))
    assert result.client_s == pytest.approx({0: 5.9, 1: 11.8})
    assert result.seconds == pytest.approx(11.8)
    assert result.server_busy_s == pytest.approx(0.2)


def test_fsl_an_uploads_every_batch_without_waiting():
    # As CSE-FSL, plus a step-1 upload: c0 1.7-1.9 and 2.3-2.5 (server 2.0, 2.6);
    # c1 3.4-3.8 and 4.6-5.0 (server 4.0, 5.2). Uploads hide behind the steps: same ends.
    result = seconds(model("fsl_an"))
    assert result.client_s == pytest.approx({0: 5.9, 1: 11.8})
    assert result.server_busy_s == pytest.approx(0.4)


def test_fsl_sage_without_alignment():
    # Round 1 (alignment every 5 rounds). Client part only; upload at step 0.
    # c0: down 1.1; fwd -> 1.2 (up arrives 1.5, server 1.5-1.6); rest 0.5 -> 1.7;
    #     step 1 -> 2.3; model up 2 + 0.1 -> 4.4
    # c1: down 2.2; fwd -> 2.4 (up arrives 3.0, server 3.0-3.1); rest 1.0 -> 3.4;
    #     step 1 -> 4.6; model up 4 + 0.2 -> 8.8
    result = seconds(model("fsl_sage"), round_idx=1)
    assert result.client_s == pytest.approx({0: 4.4, 1: 8.8})


def test_fsl_sage_alignment_waits_for_every_first_upload_then_the_am():
    # Round 0: step 0 as in round 1 (server done with both uploads at 3.1). Each AM is fitted
    # on 1 buffered sample: g* 100 + 1 epoch 170 + error before/after 2 x 30 = 330 FLOPs,
    # 0.33 s, one at a time: c0 3.1-3.43, c1 3.43-3.76.
    # c0: AM down 0.5 + 0.1 -> 4.03; step 1 -> 4.63; model up -> 6.73
    # c1: AM down 1.0 + 0.2 -> 4.96; step 1 -> 6.16; model up -> 10.36
    result = seconds(model("fsl_sage"), round_idx=0)
    assert result.client_s == pytest.approx({0: 6.73, 1: 10.36})
    assert result.server_busy_s == pytest.approx(0.2 + 0.66)
    # Two server slots: both AMs fitted at 3.1-3.43; c1's AM arrives 3.43 + 1.2 = 4.63,
    # step 1 -> 5.83, model up -> 10.03.
    two = ServerDevice(FAST.link_bps, 0.0, FAST.flops, parallel=2)
    assert seconds(model("fsl_sage", (2, 2), two), round_idx=0).seconds == pytest.approx(10.03)


def test_a_client_without_uploads_costs_only_its_model_transfers():
    # c1 has no samples: no step, no upload; down 2 + 0.2, then up 4 + 0.2 = 6.4.
    result = seconds(model("fsl_sage", (2, 0)))
    assert result.client_s[1] == pytest.approx(6.4)


def test_the_server_link_is_shared_by_transfers_in_flight():
    # FedAvg without compute: both clients download 4000 B at once through a 1000 B/s server
    # link, 500 B/s each (c1's own link allows 500 too): 8 s, then latency: 8.1 and 8.2.
    # Uploads: c0 starts at 8.1 alone (500 B/s, its own link) until c1 starts at 8.2;
    # then each gets min(own, 500): c0 500, c1 250; c0 done at 8.1 + 8 = 16.1 (+0.1),
    # c1 sends 4000 at 250 -> 16 s -> 24.2 (+0.2) = 24.4.
    slow = ServerDevice(link_bps=1000.0, latency_s=0.0, flops=1000.0, parallel=1)
    sm = model("fedavg", (2, 2), slow)
    sm.flops = StepFlops(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    result = seconds(sm)
    assert result.client_s == pytest.approx({0: 16.2, 1: 24.4})


def test_measured_compute_runs_each_device_at_the_rate_it_showed():
    # FedAvg: each client measured 5.2 s busy for its 260 FLOPs (50 FLOP/s); speed_factor 2
    # makes both 100 FLOP/s: c0 as in the FedAvg test (14.8); c1 down 8.2, steps 2 x 1.3
    # -> 10.8, up 16 + 0.2 -> 27.0.
    speed = ("system.profile=datacenter", "system.speed_factor=2")  # devices: given here
    sm = model("fedavg", (2, 2), FAST, DEVICES, *speed)
    members = {0: 2, 1: 2}
    work = sm.round_work(1, (0, 1), planned_messages(sm.algorithm, 1, members, SIZES))
    result = sm.time_round(work, {"client": {0: 5.2, 1: 5.2}, "server": 0.0})
    assert result.client_s == pytest.approx({0: 14.8, 1: 27.0})
