"""The baselines (spec: "Baselines"): behaviour on tiny models, and exact equivalences."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from algo_helpers import RecordingChannel
from torch import nn

from fslsage_ray.algorithms.client_view import ClientView
from fslsage_ray.algorithms.clients import GradientReturnClient, LocalLossClient
from fslsage_ray.algorithms.cse_fsl import CseFsl
from fslsage_ray.algorithms.fedavg import FedAvg
from fslsage_ray.algorithms.fsl_an import FslAn
from fslsage_ray.algorithms.fsl_sage import FslSage
from fslsage_ray.algorithms.servers import ServerCopies, SingleServer
from fslsage_ray.algorithms.sflv1 import SplitFedMS
from fslsage_ray.algorithms.sflv2 import SplitFedSS
from fslsage_ray.config import AlgorithmConfig, Config
from fslsage_ray.models import build_split_model
from fslsage_ray.registry import algorithm_names
from fslsage_ray.runtime.channel import ServerChannel
from fslsage_ray.runtime.handles import LocalHandle
from fslsage_ray.tasks import ImageClassification, ImageSpec, Payload

TASK = ImageClassification(ImageSpec(255.0, (0.5,), (0.25,), False), 10, 1, 8)
CPU = torch.device("cpu")


def _data(n: int):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 8, 8, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.int64)
    return ClientView({"images": images, "labels": labels}, np.arange(n), TASK)


def _split():
    torch.manual_seed(0)
    split = build_split_model("cnn", 10, 1, 8, aux="one_block")
    split.task = TASK
    return split


def _config(**alg) -> Config:
    return Config(algorithm=AlgorithmConfig(**alg))


def test_splitfed_one_client_one_batch_equals_backprop_through_the_whole_model():
    config = _config(batch_size=16)
    split = _split()
    whole = nn.Sequential(copy.deepcopy(split.client), copy.deepcopy(split.server))
    client = GradientReturnClient(
        0, _data(16), config, torch.Generator().manual_seed(3), CPU, split.client
    )
    server = SingleServer(split.server, TASK, config, CPU, returns_gradients=True)
    client.start_round({"client": client.model.state_dict()})
    gen = torch.Generator().manual_seed(3)
    batch = client.view.batch(client.view.shuffled_batches(16, gen)[0], gen, CPU)
    loss = F.cross_entropy(whole(batch.inputs), batch.targets)
    grads = torch.autograd.grad(loss, list(whole.parameters()))
    # Record the gradients each optimizer is about to apply (the server steps first,
    # inside the exchange, then the client), instead of letting Adam step.
    applied: list[torch.Tensor] = []

    def record(opt: torch.optim.Optimizer):
        return lambda: applied.extend(p.grad.clone() for g in opt.param_groups for p in g["params"])

    for opt in (client.optimizer, server.optimizer):
        opt.step = record(opt)
    client.step(0, RecordingChannel(server))
    n_server = len(list(split.server.parameters()))
    server_grads, client_grads = applied[:n_server], applied[n_server:]
    for got, want in zip(client_grads + server_grads, grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_local_loss_client_updates_its_aux_model():
    config = _config(batch_size=8, upload_every=3)
    split = _split()
    client = CseFsl(config).make_client(
        0, _data(24), split, split.make_aux(), torch.Generator().manual_seed(0), CPU
    )
    assert isinstance(client, LocalLossClient)
    start = {"client": client.model.state_dict(), "aux": copy.deepcopy(client.aux.state_dict())}
    client.start_round(start)
    channel = RecordingChannel()
    for it in range(client.num_batches):
        client.step(it, channel)
    assert [s[0] for s in channel.sent] == [0]  # K = 3, q = 3
    weight = next(k for k in start["aux"] if k.endswith("weight"))
    assert not torch.equal(client.parts()["aux"][weight], start["aux"][weight])
    assert set(client.parts()) == {"client", "aux"}


def test_fsl_an_uploads_every_batch_and_keeps_a_server_copy_per_client():
    config = _config(batch_size=8, upload_every=5)  # q is ignored by FSL-AN
    split = _split()
    algorithm = FslAn(config)
    client = algorithm.make_client(
        0, _data(40), split, split.make_aux(), torch.Generator().manual_seed(0), CPU
    )
    client.start_round(algorithm.initial_parts(split, split.make_aux()))
    channel = RecordingChannel()
    for it in range(client.num_batches):
        client.step(it, channel)
    assert [s[0] for s in channel.sent] == [0, 1, 2, 3, 4]
    server = algorithm.make_server(split, {}, {0: 40, 1: 40}, CPU)
    assert isinstance(server, ServerCopies) and not server.returns_gradients


def test_server_copies_average_with_sample_weights_at_round_end():
    config = _config()
    split = _split()
    server = ServerCopies(split.server, TASK, {0: 10, 1: 30}, config, CPU, returns_gradients=False)
    rng = np.random.default_rng(0)
    for cid in (0, 1):
        z = rng.standard_normal((4, 32, 4, 4)).astype(np.float32)
        server.process_upload(cid, Payload(z, np.arange(4) + cid))
    before = {c: copy.deepcopy(m.state_dict()) for c, m in server.copies.items()}
    server.end_round()
    key = next(k for k in before[0] if k.endswith("weight"))
    expected = 0.25 * before[0][key] + 0.75 * before[1][key]
    torch.testing.assert_close(server.average.state_dict()[key], expected)
    torch.testing.assert_close(server.copies[0].state_dict()[key], expected)


def test_server_copies_average_only_the_clients_that_took_part():
    split = _split()
    server = ServerCopies(split.server, TASK, {0: 10, 1: 30, 2: 60}, _config(), CPU, False)
    z = np.random.default_rng(1).standard_normal((4, 32, 4, 4)).astype(np.float32)
    server.process_upload(2, Payload(z, np.arange(4)))
    trained = copy.deepcopy(server.copies[2].state_dict())
    server.end_round()
    for key, value in trained.items():
        torch.testing.assert_close(server.average.state_dict()[key], value)


@pytest.mark.parametrize(
    "cls, parts, ordered, returns, sequential",
    [
        (FedAvg, ("full",), False, False, False),
        (SplitFedMS, ("client",), False, True, False),
        (SplitFedSS, ("client",), False, True, True),
        (CseFsl, ("client", "aux"), True, False, False),
        (FslAn, ("client", "aux"), True, False, False),
    ],
)
def test_what_each_baseline_shares_and_how_it_talks(cls, parts, ordered, returns, sequential):
    assert cls.shared_parts == parts
    assert cls.ordered_uploads == ordered
    assert cls.returns_gradients == returns
    assert cls.sequential_clients == sequential
    assert cls.name in algorithm_names()


@pytest.mark.parametrize("algorithm", [FedAvg, SplitFedMS, CseFsl, FslSage], ids=lambda a: a.name)
def test_a_client_holds_no_gradients_between_its_steps(algorithm) -> None:
    """A host steps many clients in turn: each must drop its model-sized gradients after its
    step (every step sets them to None before its backward, so nothing reads them)."""
    config = _config(batch_size=8, upload_every=1)
    split = _split()
    client = algorithm(config).make_client(
        0, _data(16), split, split.make_aux(), torch.Generator().manual_seed(0), CPU
    )
    client.start_round(algorithm(config).initial_parts(split, split.make_aux()))
    before = {n: p.detach().clone() for n, p in client.model.named_parameters()}
    client.step(0, RecordingChannel())
    models = [client.model, getattr(client, "aux", client.model)]
    assert all(p.grad is None for m in models for p in m.parameters())
    changed = [n for n, p in client.model.named_parameters() if not torch.equal(p, before[n])]
    assert changed, "the step must still have moved the model"


def test_in_process_exchanges_keep_the_clients_tensors_and_the_numbers() -> None:
    """In one process a SplitFed batch goes to the server as the client's own tensor (no
    copy to the host and back, which on a GPU is two transfers per batch) and dL/dz comes
    back as a tensor; the steps are bit-identical to the numpy path that Ray takes."""
    config = _config(batch_size=8)
    seen: list = []

    def pair():
        split = _split()
        client = GradientReturnClient(
            0, _data(16), config, torch.Generator().manual_seed(3), CPU, split.client
        )
        server = SingleServer(split.server, TASK, config, CPU, returns_gradients=True)
        client.start_round({"client": client.model.state_dict()})
        return client, server

    class ServerHere:  # what the channel calls: ServerHost's verb, here without ordering
        def __init__(self, server) -> None:
            self.server = server

        def take_exchanges(self, uploads):
            answers = [self.server.process_upload(cid, payload) for _, cid, payload in uploads]
            seen.extend((payload, a) for (_, _, payload), a in zip(uploads, answers, strict=True))
            return answers

    direct_client, direct_server = pair()
    direct = ServerChannel(LocalHandle(ServerHere(direct_server)), max_inflight=8)
    assert direct.keeps_tensors
    via_numpy_client, via_numpy_server = pair()
    for it in range(direct_client.num_batches):
        direct_client.step(it, direct)
        via_numpy_client.step(it, RecordingChannel(via_numpy_server))
    payload, answer = seen[0]
    assert isinstance(payload.smashed, torch.Tensor) and isinstance(answer, torch.Tensor)
    assert direct_client.stats.bytes == via_numpy_client.stats.bytes  # same bytes booked
    for one, other in ((direct_client, via_numpy_client), (direct_server, via_numpy_server)):
        pairs = zip(one.model.parameters(), other.model.parameters(), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)


def test_payload_tensors_are_copies_that_keep_their_layout() -> None:
    """The server may work on an upload in place: it gets a copy, channels-last kept."""
    z = torch.randn(4, 3, 5, 5).to(memory_format=torch.channels_last)
    y = torch.arange(4, dtype=torch.int32)
    for payload in (Payload(z, y), Payload(z.numpy(), y.numpy())):
        got_z, got_y, _ = payload.tensors(CPU)
        assert torch.equal(got_z, z) and got_z.data_ptr() != z.data_ptr()
        assert got_z.is_contiguous(memory_format=torch.channels_last)
        assert got_y.dtype == torch.int64 and torch.equal(got_y, y.long())
