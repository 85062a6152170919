"""Fitting a group of AMs as one vectorised model is the same maths as one at a time."""

from __future__ import annotations

import copy

import numpy as np
import torch

from fslsage_ray.algorithms.aux_group import AlignGroupJob, group_jobs
from fslsage_ray.algorithms.fsl_sage import FslSageServer
from fslsage_ray.config import Config
from fslsage_ray.config.schema import AlignmentConfig
from fslsage_ray.models import build_split_model
from fslsage_ray.tasks import ImageClassification, ImageSpec, Payload

TASK = ImageClassification(ImageSpec(255.0, (0.5,), (0.25,), False), 10, 1, 8)
SIZES = {0: 24, 1: 24, 2: 24, 3: 16}  # client 3's buffer differs: it cannot stack


def _server(group_size: int) -> FslSageServer:
    torch.manual_seed(0)
    split = build_split_model("cnn", 10, 1, 8, aux="two_blocks")
    aux = {cid: split.make_aux() for cid in SIZES}  # four different initialisations
    alignment = AlignmentConfig(epochs=4, batch_size=8, group_size=group_size)
    server = FslSageServer(
        split.server, aux, TASK, Config(alignment=alignment), torch.device("cpu")
    )
    rng = np.random.default_rng(3)
    for cid, n in SIZES.items():
        z = rng.standard_normal((n, 32, 4, 4)).astype(np.float32)
        server.process_upload(cid, Payload(z, rng.integers(0, 10, n)))
    return server


def _align(server: FslSageServer) -> dict[int, dict]:
    reports = {}
    for job in server.prepare_jobs(sorted(SIZES)):
        outcomes = server.run_job(job)
        for outcome in outcomes if isinstance(outcomes, list) else [outcomes]:
            report, delivery = server.complete_job(outcome)
            assert delivery is not None  # fitted away from the client: it goes down
            reports[report.cid] = report.metrics
    return reports


def test_groups_follow_client_ids_and_split_where_buffers_differ():
    server = _server(group_size=3)
    jobs = server.prepare_jobs([3, 1, 0, 2])
    assert isinstance(jobs[0], AlignGroupJob) and [j.cid for j in jobs[0].jobs] == [0, 1, 2]
    assert [j.cid for j in jobs[1:]] == [3]  # a group of one runs as a plain job
    regrouped = group_jobs([j for g in jobs[:1] for j in g.jobs] + jobs[1:], size=4)
    assert [[j.cid for j in g] for g in regrouped] == [[0, 1, 2], [3]]


def test_a_vectorised_group_fits_like_one_at_a_time_twice_in_a_row():
    one, grouped = _server(group_size=1), _server(group_size=4)
    for _ in range(2):  # the second alignment starts from the stacked Adam moments
        expected, got = _align(one), _align(grouped)
        for cid in SIZES:
            for key in ("am_rel_error_before", "am_rel_error_after"):
                assert np.isclose(got[cid][key], expected[cid][key], rtol=1e-4), (cid, key)
    for cid in SIZES:
        a, b = one.aux[cid].state_dict(), grouped.aux[cid].state_dict()
        for name in a:
            assert torch.allclose(a[name].double(), b[name].double(), rtol=1e-4, atol=1e-6), name
        moments_a = one.aux_optim[cid].state_dict()["state"]
        moments_b = grouped.aux_optim[cid].state_dict()["state"]
        for i in moments_a:
            steps = 2 * 4 * (SIZES[cid] // 8)  # 2 alignments x 4 epochs x chunks of 8
            assert float(moments_a[i]["step"]) == float(moments_b[i]["step"]) == steps
            assert torch.allclose(moments_a[i]["exp_avg"], moments_b[i]["exp_avg"], atol=1e-6)
    assert not torch.equal(  # and the AMs really moved
        one.aux[0].state_dict()["fc.weight"],
        copy.deepcopy(_server(1).aux[0]).state_dict()["fc.weight"],
    )
