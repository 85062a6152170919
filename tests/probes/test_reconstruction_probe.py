"""The reconstruction probe around probes/inversion.py (a parallel branch): it runs once that
module exists. Through the run's own client part it reconstructs the probe images far better
from an identity-like cut than the mean image does, it refuses a task it cannot handle, and
it is n/a where no activations cross a cut (FedAvg)."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from fslsage_ray.algorithms.registry import get_algorithm
from fslsage_ray.config import load_config
from fslsage_ray.experiment import WorldSpec, build_template, load_data
from fslsage_ray.probes.base import ProbeRefused, ProbeSite
from fslsage_ray.probes.probe_set import probe_set
from fslsage_ray.probes.reconstruction import IMAGE_COLUMNS, ReconstructionProbe

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("fslsage_ray.probes.inversion") is None,
    reason="fslsage_ray.probes.inversion is on the probes-inversion branch",
)


def _setup(*overrides: str):
    config = load_config(
        None,
        [
            "data.train_subset=200",
            "data.test_subset=300",
            "probes.list=[reconstruction]",
            "probes.set_size=32",
            "probes.reconstruction.steps=150",
            "probes.reconstruction.public_rows=300",
            *overrides,
        ],
    )
    data = load_data(config)
    return config, data


def test_reconstructs_through_an_identity_cut_and_leaves_the_client_part_alone():
    config, data = _setup()
    probe = ReconstructionProbe(config.probes.settings("reconstruction"), config, data.task)
    assert probe.not_applicable(get_algorithm(config)) is None
    identity = torch.nn.Identity()
    site = ProbeSite(
        config,
        data.task,
        identity,
        identity,
        None,
        probe_set(data.train, [torch.arange(200).numpy()], 32, config.run.seed),
        data.test,
        torch.device("cpu"),
    )
    before = torch.get_rng_state()
    got = probe.measure(site, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), before)  # no global random number drawn
    assert set(got) == set(IMAGE_COLUMNS)
    assert got["recon_psnr_db"] > got["recon_mean_psnr_db"]  # beats predicting the mean
    assert 0 < got["recon_ssim"] <= 1


def test_the_run_client_part_is_not_changed():
    config, data = _setup()
    template = build_template(WorldSpec(config, data.task))
    state = {k: v.clone() for k, v in template.client.state_dict().items()}
    probe = ReconstructionProbe(config.probes.settings("reconstruction"), config, data.task)
    site = ProbeSite(
        config,
        data.task,
        template.client,
        template.server,
        None,
        probe_set(data.train, [torch.arange(200).numpy()], 32, config.run.seed),
        data.test,
        torch.device("cpu"),
    )
    got = probe.measure(site, torch.Generator().manual_seed(0))
    assert all(not math.isnan(v) for v in got.values())
    after = template.client.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert all(p.requires_grad for p in template.client.parameters())


def test_not_applicable_to_fedavg_and_refused_for_an_unknown_task():
    config, data = _setup("algorithm.name=fedavg")
    probe = ReconstructionProbe(config.probes.settings("reconstruction"), config, data.task)
    assert "whole models" in probe.not_applicable(get_algorithm(config))
    odd = ReconstructionProbe(config.probes.settings("reconstruction"), config, object())
    with pytest.raises(ProbeRefused, match="knows images and text"):
        odd.not_applicable(get_algorithm(config))
