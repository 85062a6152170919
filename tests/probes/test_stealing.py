"""Model stealing: the client part followed by the AM a client holds, used alone as a model,
scores exactly what an explicit standalone nn.Sequential(client part, AM) scores; methods
without an AM write NaN, never a measured-looking zero."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fslsage_ray.algorithms.base import transfer_state
from fslsage_ray.algorithms.registry import get_algorithm
from fslsage_ray.config import load_config
from fslsage_ray.experiment import WorldSpec, build_template, initial_aux, load_data
from fslsage_ray.probes.on_server import measure_on_server
from fslsage_ray.probes.stealing import StealingProbe
from fslsage_ray.runtime.server_host import ServerHost
from fslsage_ray.tasks.classification import IMAGES, LABELS
from fslsage_ray.tasks.image_transforms import make_batch

CPU = torch.device("cpu")


def _world(algorithm: str):
    config = load_config(
        None,
        [
            f"algorithm.name={algorithm}",
            "algorithm.num_clients=2",
            "data.train_subset=100",
            "data.test_subset=120",
            "run.eval_batch_size=50",  # several test batches
            "probes.list=[stealing]",
            "probes.stealing.client=1",
        ],
    )
    data = load_data(config)
    return config, data, WorldSpec(config, data.task)


def _jiggled(module: nn.Module, seed: int) -> nn.Module:
    """Weights no run starts from, so the test cannot pass on initial states."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return module


def _standalone_accuracy(client: nn.Module, aux: nn.Module, test, task) -> tuple[float, float]:
    model = nn.Sequential(client, aux).eval()
    with torch.no_grad():
        x = make_batch(test[IMAGES], task.spec, False)
        y = torch.as_tensor(np.asarray(test[LABELS], np.int64))
        logits = model(x)
    loss = nn.functional.cross_entropy(logits, y).item()
    return (logits.argmax(1) == y).double().mean().item(), loss


@pytest.mark.parametrize("algorithm", ["cse_fsl", "fsl_sage"])
def test_stealing_equals_a_standalone_client_part_plus_am(algorithm):
    config, data, world = _world(algorithm)
    server = ServerHost(world, data.test, {0: 50, 1: 50}, CPU)
    template = build_template(world)
    client = _jiggled(template.client, 1)
    parts = {"client": transfer_state(client, "trainable")}
    if algorithm == "cse_fsl":  # the averaged AM every client receives
        aux = _jiggled(initial_aux(template, config.run.seed), 2)
        parts["aux"] = transfer_state(aux, "trainable")
    else:  # FSL-SAGE: the server's AM of client probes.stealing.client
        aux = _jiggled(server.server.aux[1], 2)
    probe = StealingProbe(config.probes.settings("stealing"), config, data.task)
    assert probe.not_applicable(get_algorithm(config)) is None
    got = server.inspect(measure_on_server, parts, [probe], {}, 0)
    acc, loss = _standalone_accuracy(client, aux, data.test, data.task)
    assert got["steal_acc"] == pytest.approx(acc, abs=1e-12)
    assert got["steal_loss"] == pytest.approx(loss, rel=1e-5)
    assert 0 < acc < 1


def test_methods_without_an_am_say_so():
    config, data, _ = _world("sflv1")
    probe = StealingProbe(config.probes.settings("stealing"), config, data.task)
    assert "no auxiliary model" in probe.not_applicable(get_algorithm(config))
    from fslsage_ray.probes.base import nan_columns

    assert all(math.isnan(v) for v in nan_columns(probe).values())
    assert probe.columns() == ("steal_acc", "steal_loss")
