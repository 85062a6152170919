"""Probes change nothing that training computes: a run with every probe has the same
learning columns, bytes and simulated time as one without, in one process and on 3 Ray
actors, and the probe values are the same in both. Exposure counts what the ledger booked,
exactly, and continues exactly across a resume."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fslsage_ray.config import load_config
from fslsage_ray.outputs.metrics import TIMING_COLUMNS
from fslsage_ray.probes.exposure import COLUMNS as EXPOSURE_COLUMNS
from fslsage_ray.probes.exposure import ExposureProbe
from fslsage_ray.simulation import Simulation

ROUNDS = 3
BASE = [
    f"run.rounds={ROUNDS}",
    "algorithm.num_clients=5",  # 120 rows each: batches of 32, 32, 32, 24
    "algorithm.batch_size=32",
    "algorithm.upload_every=2",  # uploads at iterations 0 and 2: 64 examples a client
    "alignment.every=2",
    "alignment.epochs=5",
    "data.train_subset=600",
    "data.test_subset=200",
    "runtime.actor_num_cpus=0.5",
    "runtime.server_num_cpus=0.5",
]
PROBES = ["probes.list=[dcor, stealing, exposure]", "probes.every=2", "probes.set_size=64"]
PROBE_ROUNDS = [1, 2]  # every 2nd round, and the last


def _run(tmp_path, name: str, *extra: str) -> list[dict]:
    config = load_config(None, [*BASE, *extra])
    return Simulation(config, run_dir=tmp_path / name, progress=False).run().to_pylist()


def _split(rows: list[dict], probe_columns: set[str]) -> tuple[list[dict], list[dict]]:
    """(learning columns, probe columns) of each row; NaN as None so it equals itself."""
    skip = set(TIMING_COLUMNS)

    def clean(v):
        return None if isinstance(v, float) and math.isnan(v) else v

    learning = [{k: clean(v) for k, v in r.items() if k not in skip | probe_columns} for r in rows]
    probes = [{k: clean(v) for k, v in r.items() if k in probe_columns} for r in rows]
    return learning, probes


@pytest.mark.ray
def test_probes_change_nothing_and_agree_on_any_layout(tmp_path, ray_local):
    timed = "system.profile=broadband"  # simulated time must not move either
    plain = _run(tmp_path, "plain", "runtime.backend=inprocess", timed)
    probed = _run(tmp_path, "probed", "runtime.backend=inprocess", timed, *PROBES)
    on_ray = _run(tmp_path, "ray", "runtime.num_actors=3", timed, *PROBES)
    probe_columns = set(probed[0]) - set(plain[0])
    assert {"dcor", "steal_acc", "exposed_examples_cum", "probe_s"} <= probe_columns
    assert "sim_time_s" in plain[0]
    learning, values = _split(probed, probe_columns)
    assert learning == _split(plain, probe_columns)[0]
    ray_learning, ray_values = _split(on_ray, probe_columns)
    assert ray_learning == learning
    values = [{k: v for k, v in r.items() if k != "probe_s"} for r in values]
    ray_values = [{k: v for k, v in r.items() if k != "probe_s"} for r in ray_values]
    assert ray_values == values
    probed_rounds = [r["round"] for r in probed if r.get("dcor") is not None]
    assert probed_rounds == PROBE_ROUNDS
    # exposure: 5 clients x 64 examples a round, no gradients returned (FSL-SAGE)
    last = probed[-1]
    assert last["exposed_examples"] == 320 and last["exposed_examples_cum"] == 3 * 320
    assert last["exposed_examples_cum_max"] == 3 * 64 and last["grad_messages_cum"] == 0
    # every uploaded example costs the same bytes: the count is the ledger's
    per_example = {r["bytes_smashed_up"] / r["exposed_examples"] for r in probed[1:]}
    assert len(per_example) == 1
    assert 0 < last["dcor"] <= 1 and 0 <= last["steal_acc"] <= 1
    table = (tmp_path / "probed" / "probes_exposure.csv").read_text().splitlines()
    assert table[0] == "client,examples,exposed_examples,grad_messages"
    assert table[1] == "0,120,192,0"


def test_exposure_resumes_exactly(tmp_path):
    # (without simulated time: a checkpoint of a run with system.profile holds numpy floats
    # in its sim columns, which the weights-only loader refuses; a separate, older issue)
    first = _run(tmp_path, "whole", "runtime.backend=inprocess", *PROBES)
    config = load_config(None, [*BASE, "runtime.backend=inprocess", *PROBES, "run.rounds=2"])
    Simulation(config, run_dir=tmp_path / "cut", progress=False).run()
    resumed = Simulation.resume(tmp_path / "cut", ["run.rounds=3"], progress=False).run()
    last = resumed.to_pylist()[-1]
    for column in EXPOSURE_COLUMNS:
        assert last[column] == first[-1][column], column


def test_exposure_counts_splitfed_batches_and_gradients():
    """SplitFed: every batch goes up and its dL/dz comes back."""
    config = load_config(None, ["algorithm.name=sflv1", "algorithm.batch_size=32"])
    probe = ExposureProbe(None, config, None)
    probe.start([100, 64])  # batches: 32, 32, 32, 4 and 32, 32
    messages = [(0, s, "smashed.up", 1) for s in range(4)]
    messages += [(0, s, "grad.down", 1) for s in range(4)]
    messages += [(1, s, k, 1) for s in range(2) for k in ("smashed.up", "grad.down")]
    messages += [(1, 0, "client_model.up", 99)]
    for t in range(2):
        probe.observe(t, messages)
    columns = probe.ledger_columns()
    assert columns["exposed_examples"] == 164 and columns["exposed_examples_cum"] == 328
    assert columns["exposed_examples_cum_max"] == 200
    assert columns["exposed_frac_cum_max"] == 2.0  # both clients' data went up twice
    assert columns["grad_messages"] == 6 and columns["grad_messages_cum_max"] == 8
    assert np.array_equal(probe.per_client()["grad_messages"], [8, 4])
