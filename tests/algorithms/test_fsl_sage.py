"""FSL-SAGE's client and server behaviour on a small split CNN."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from algo_helpers import RecordingChannel

from fslsage_ray.algorithms.base import ModelSizes
from fslsage_ray.algorithms.client_view import ClientView, batch_sizes
from fslsage_ray.algorithms.fsl_sage import (
    AlignmentBuffer,
    FslSage,
    FslSageClient,
    FslSageServer,
)
from fslsage_ray.algorithms.phases import LocalPhase, ServerJobPhase
from fslsage_ray.config import AlgorithmConfig, Config
from fslsage_ray.config.schema import AlignmentConfig
from fslsage_ray.models import build_split_model, state_nbytes
from fslsage_ray.tasks import ImageClassification, ImageSpec, Payload, PayloadSizes

TASK = ImageClassification(ImageSpec(255.0, (0.5,), (0.25,), False), 10, 1, 8)
ALIGN = ServerJobPhase("aligning AMs")


def _model():
    torch.manual_seed(0)
    return build_split_model("cnn", 10, 1, 8, aux="two_blocks")


def _client(alg: AlgorithmConfig, n: int = 50, cid: int = 0) -> FslSageClient:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 8, 8, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.int64)
    split = _model()
    view = ClientView({"images": images, "labels": labels}, np.arange(n), TASK)
    gen = torch.Generator().manual_seed(1)
    config = Config(algorithm=alg)
    return FslSageClient(
        cid,
        view,
        config,
        gen,
        torch.device("cpu"),
        split.client,
        split.make_aux(),
        upload_every=FslSage(config).upload_every(),
    )


def _server(alignment: AlignmentConfig) -> FslSageServer:
    split = _model()
    return FslSageServer(
        split.server,
        {0: split.make_aux()},
        TASK,
        Config(alignment=alignment),
        torch.device("cpu"),
        alignment.lazy,
    )


def test_client_uploads_every_qth_batch_and_never_updates_its_aux_model():
    alg = AlgorithmConfig(batch_size=8, upload_every=3)
    client = _client(alg, n=50)  # K = 7 batches: 6 of 8 and one of 2
    client.start_round({"client": client.model.state_dict()})
    aux_before = copy.deepcopy(client.aux.state_dict())
    model_before = copy.deepcopy(client.model.state_dict())
    channel = RecordingChannel()
    for it in range(client.num_batches):
        client.step(it, channel)
    sent = channel.sent
    assert [s[0] for s in sent] == [0, 3, 6]
    assert sent[0][2] == (8, 32, 4, 4) and sent[-1][2] == (2, 32, 4, 4)  # last batch kept
    for key, value in client.aux.state_dict().items():
        if "running" not in key and "num_batches" not in key:  # train-mode BN stats move
            assert torch.equal(value, aux_before[key]), key
    changed = [
        k for k in model_before if not torch.equal(model_before[k], client.model.state_dict()[k])
    ]
    assert changed, "the client model must train"
    assert client.stats.bytes["smashed.up"] == (8 + 8 + 2) * 32 * 4 * 4 * 4


def test_client_step_follows_the_aux_gradient_estimate():
    """A client step is an Adam step on CE(a(h(x))) taken for h's parameters only."""
    alg = AlgorithmConfig(batch_size=8, upload_every=100)
    client = _client(alg, n=8)
    twin_model = copy.deepcopy(client.model)
    twin_aux = copy.deepcopy(client.aux)
    opt = torch.optim.Adam(twin_model.parameters(), lr=1e-3, weight_decay=1e-4)
    client.start_round({"client": client.model.state_dict()})
    gen = torch.Generator().manual_seed(1)
    batches = client.view.shuffled_batches(8, gen)
    batch = client.view.batch(batches[0], gen, torch.device("cpu"))
    client.step(0, RecordingChannel())
    twin_model.train()
    twin_aux.train()
    loss = torch.nn.functional.cross_entropy(twin_aux(twin_model(batch.inputs)), batch.targets)
    opt.zero_grad()
    loss.backward()
    opt.step()
    for (k, a), b in zip(
        client.model.state_dict().items(), twin_model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=k)


def test_server_steps_once_per_upload_and_buffers_newest_samples():
    server = _server(AlignmentConfig(buffer_size=10))
    before = copy.deepcopy(server.model.state_dict())
    z = np.random.default_rng(0).standard_normal((6, 32, 4, 4)).astype(np.float32)
    y = np.arange(6)
    server.process_upload(0, Payload(z, y))
    assert server.optimizer.state[next(iter(server.model.parameters()))]["step"] == 1
    assert any(not torch.equal(before[k], v) for k, v in server.model.state_dict().items())
    server.process_upload(0, Payload(z + 1, y + 1))
    buf = server.buffers[0]
    assert len(buf) == 10  # 12 uploaded, newest 10 kept
    torch.testing.assert_close(buf.targets, torch.tensor([2, 3, 4, 5, 1, 2, 3, 4, 5, 6]))
    mean_loss, uploads = server.take_round_stats()
    assert uploads == 2 and mean_loss > 0


def test_alignment_lowers_the_estimation_error_on_the_buffer():
    server = _server(AlignmentConfig(epochs=60, batch_size=1000))
    rng = np.random.default_rng(1)
    for _ in range(4):
        z = rng.standard_normal((16, 32, 4, 4)).astype(np.float32)
        server.process_upload(0, Payload(z, rng.integers(0, 10, 16)))
    assert len(server.buffers[0]) == 64
    (job,) = server.prepare_jobs([0])
    report, delivery = server.complete_job(server.run_job(job))
    after, before = report.metrics["am_rel_error_after"], report.metrics["am_rel_error_before"]
    assert after < 0.7 * before
    assert set(delivery) == set(server.aux[0].state_dict())  # fitted here: sent down
    assert report.bytes == {"aux_model.down": state_nbytes(server.aux[0])}


def test_lazy_alignment_stores_upload_time_gradients():
    server = _server(AlignmentConfig(lazy=True, epochs=1))
    z = np.random.default_rng(2).standard_normal((5, 32, 4, 4)).astype(np.float32)
    server.process_upload(0, Payload(z, np.arange(5)))
    assert server.buffers[0].grad_sums.shape == (5, 32, 4, 4)
    assert float(server.buffers[0].grad_sums.abs().sum()) > 0


def test_fifo_buffer_capacity():
    buf = AlignmentBuffer(3)
    buf.append(torch.zeros(2, 1), torch.tensor([0, 1]), {}, None)
    buf.append(torch.ones(2, 1), torch.tensor([2, 3]), {}, None)
    assert buf.targets.tolist() == [1, 2, 3]


def test_alignment_rounds_include_round_zero_and_every_lth():
    algorithm = FslSage(Config(alignment=AlignmentConfig(every=10)))
    both = [0, 1]
    assert algorithm.round_phases(0, both) == [LocalPhase(0, 1), ALIGN, LocalPhase(1, None)]
    assert algorithm.round_phases(5, both) == [LocalPhase(0, None)]
    assert algorithm.round_phases(20, both)[1] == ALIGN


def test_client_major_alignment_fits_each_am_after_that_clients_first_upload():
    config = Config(
        algorithm=AlgorithmConfig(server_order="client_major", upload_every=2),
        alignment=AlignmentConfig(every=10),
    )
    phases = FslSage(config).round_phases(0, [3, 7])
    assert phases == [
        LocalPhase(0, 1, (3,), hold_last=True),
        ServerJobPhase("aligning AMs", (3,)),
        LocalPhase(1, None, (3,)),
        LocalPhase(0, 1, (7,), hold_last=True),
        ServerJobPhase("aligning AMs", (7,)),
        LocalPhase(1, None, (7,)),
    ]
    assert FslSage(config).round_phases(1, [3, 7]) == [
        LocalPhase(0, None, (3,)),
        LocalPhase(0, None, (7,)),
    ]
    keys = FslSage(config).expected_uploads({1: 3, 0: 5})
    assert keys == [(0, 0), (2, 0), (4, 0), (0, 1), (2, 1)]


@pytest.mark.parametrize("order", ["interleaved", "client_major"])
def test_iteration0_chooses_whether_the_first_step_waits_for_the_fitted_am(order):
    """auto keeps each order's own choice; the explicit values override it, in both orders."""

    def first_phase(iteration0: str) -> LocalPhase:
        config = Config(
            algorithm=AlgorithmConfig(server_order=order),
            alignment=AlignmentConfig(every=10, iteration0=iteration0),
        )
        phases = FslSage(config).round_phases(0, [3, 7])
        assert phases[1].label == "aligning AMs" and phases[2].start == 1
        assert FslSage(config).round_phases(1, [3, 7])[0].hold_last is False
        return phases[0]

    assert first_phase("auto").hold_last is (order == "client_major")
    assert first_phase("before_alignment").hold_last is False
    assert first_phase("after_alignment").hold_last is True


def test_iteration0_refuses_an_unknown_value():
    with pytest.raises(ValueError, match="alignment.iteration0 must be one of"):
        AlignmentConfig(iteration0="first")


def test_a_held_step_waits_for_the_new_aux_model():
    """hold=True uploads at once but steps only at the next call, through the AM held then."""
    alg = AlgorithmConfig(batch_size=8, upload_every=1)
    held, plain = _client(alg, n=16), _client(alg, n=16)
    new_aux = copy.deepcopy(held.aux)
    with torch.no_grad():
        for p in new_aux.parameters():
            p.add_(0.1)
    for client in (held, plain):
        client.start_round({"client": client.model.state_dict()})
    channel = RecordingChannel()
    held.step(0, channel, hold=True)
    assert len(channel.sent) == 1 and held.stats.steps == 0  # uploaded, not yet stepped
    held.accept_delivery(new_aux.state_dict())
    held.end_round()
    plain.accept_delivery(new_aux.state_dict())
    plain.step(0, RecordingChannel())
    for key, value in plain.model.state_dict().items():
        torch.testing.assert_close(held.model.state_dict()[key], value, msg=key)


def test_expected_uploads_are_ordered_by_iteration_then_client():
    alg = AlgorithmConfig(upload_every=2)
    keys = FslSage(Config(algorithm=alg)).expected_uploads({1: 3, 0: 5})
    assert keys == [(0, 0), (0, 1), (2, 0), (2, 1), (4, 0)]


@pytest.mark.parametrize("round_idx, aligned", [(0, True), (1, False), (10, True)])
def test_plan_for_the_authors_cifar10_setting(round_idx, aligned):
    alg = AlgorithmConfig(batch_size=256, upload_every=5)
    torch.manual_seed(0)
    split = build_split_model("resnet18", 10, 3, 32)
    client_b, aux_b = state_nbytes(split.client), state_nbytes(split.make_aux())
    smashed = 128 * 4 * 4 * 4
    sizes = ModelSizes(client_b, state_nbytes(split.server), aux_b, PayloadSizes(smashed, 0, 8))
    config = Config(algorithm=alg, alignment=AlignmentConfig(every=10))
    counts = FslSage(config).plan_round_bytes(round_idx, [5000] * 10, sizes)
    # K = ceil(5000/256) = 20 batches (19 of 256, one of 136); uploads at it = 0,5,10,15: 4 x 256
    assert batch_sizes(5000, 256)[-1] == 136
    assert counts["smashed.up"] == 10 * 4 * 256 * smashed
    assert counts["client_model.down"] == counts["client_model.up"] == 10 * client_b
    assert ("aux_model.down" in counts) == aligned
    if aligned:
        assert counts["aux_model.down"] == 10 * aux_b
    assert "labels.up" not in counts
