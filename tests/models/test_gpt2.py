"""Split GPT-2 with LoRA: equal to the unsplit model, LoRA on q/v only, masked loss, alignment."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download at test time
pytest.importorskip("transformers")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import GPT2LMHeadModel  # noqa: E402

from fslsage_ray.data.e2e import encode_e2e  # noqa: E402
from fslsage_ray.data.tokenizer import load_tokenizer  # noqa: E402
from fslsage_ray.models.errors import ModelError  # noqa: E402
from fslsage_ray.models.gpt2 import (  # noqa: E402
    GPT2Settings,
    build_gpt2_split,
    gpt2_config,
    load_trainable_state,
    trainable_state,
)
from fslsage_ray.models.lora import FusedQVLoRA  # noqa: E402
from fslsage_ray.tasks.text_loss import token_loss_terms  # noqa: E402

TINY = GPT2Settings(
    n_layer=3, n_embd=32, n_head=4, n_positions=32, vocab_size=97, seq_len=16, aux_blocks=2
)


def _batch(settings: GPT2Settings, n: int = 3, seed: int = 1):
    """Random token ids with right padding of different lengths (row 0 unpadded)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, settings.vocab_size, (n, settings.seq_len), generator=gen)
    mask = torch.ones(n, settings.seq_len, dtype=torch.int64)
    for row in range(1, n):
        mask[row, settings.seq_len - 3 * row :] = 0
    return ids, mask


def _split_logits(split, ids, mask):
    split.client.eval()
    split.server.eval()
    with torch.no_grad():
        return split.server(split.client(ids, mask), mask)


def test_split_equals_unsplit_random_init() -> None:
    torch.manual_seed(0)
    split = build_gpt2_split(TINY)
    torch.manual_seed(0)  # the split builds this very model first, then cuts it
    full = GPT2LMHeadModel(gpt2_config(TINY, "sdpa")).eval()
    assert torch.equal(full.transformer.wte.weight, split.client.wte.weight)
    ids, mask = _batch(TINY)
    z = split.client(ids, mask)
    assert z.shape == (3, *split.cut_shape) and z.dtype == torch.float32
    with torch.no_grad():
        expected = full(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(_split_logits(split, ids, mask), expected, rtol=1e-5, atol=1e-5)


def test_split_equals_unsplit_pretrained(tmp_path) -> None:
    torch.manual_seed(3)
    full = GPT2LMHeadModel(gpt2_config(TINY, "sdpa"))
    with torch.no_grad():  # make every tensor non-trivial, so a missed weight shows
        for param in full.parameters():
            param.add_(0.05 * torch.randn_like(param))
    full.save_pretrained(tmp_path / "ckpt")
    settings = GPT2Settings(**{**TINY.__dict__, "pretrained_path": str(tmp_path / "ckpt")})
    torch.manual_seed(99)
    split = build_gpt2_split(settings)
    ids, mask = _batch(settings, seed=5)
    with torch.no_grad():
        expected = full.eval()(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(_split_logits(split, ids, mask), expected, rtol=1e-5, atol=1e-5)


def test_pretrained_shape_mismatch_and_bad_settings_refused(tmp_path) -> None:
    GPT2LMHeadModel(gpt2_config(TINY, "sdpa")).save_pretrained(tmp_path / "ckpt")
    wrong = GPT2Settings(
        **{**TINY.__dict__, "n_layer": 4, "pretrained_path": str(tmp_path / "ckpt")}
    )
    with pytest.raises(ModelError, match="n_layer 3"):
        build_gpt2_split(wrong)
    with pytest.raises(ModelError, match="not a local folder"):
        build_gpt2_split(GPT2Settings(**{**TINY.__dict__, "pretrained_path": str(tmp_path / "no")}))
    with pytest.raises(ModelError, match="n_positions"):
        GPT2Settings(**{**TINY.__dict__, "seq_len": 64})
    with pytest.raises(ModelError, match="client_blocks"):
        GPT2Settings(**{**TINY.__dict__, "client_blocks": 3})


def _effective_weight(layer: FusedQVLoRA) -> torch.Tensor:
    """The fused layer's weight as its outputs show it: f(I) - f(0), in eval mode."""
    eye = torch.eye(layer.base.weight.shape[0])
    with torch.no_grad():
        return layer(eye) - layer(torch.zeros_like(eye))


def test_lora_trains_only_q_and_v() -> None:
    torch.manual_seed(0)
    split = build_gpt2_split(TINY)
    client, server = split.client, split.server
    for part, blocks in ((client, TINY.client_blocks), (server, TINY.n_layer - TINY.client_blocks)):
        names = [n for n, p in part.named_parameters() if p.requires_grad]
        assert len(names) == 4 * blocks
        assert all(n.rsplit(".", 1)[-1].startswith("lora_") for n in names)
    assert set(trainable_state(client)) == {
        n for n, p in client.named_parameters() if p.requires_grad
    }
    layers = [m for part in (client, server) for m in part.modules() if isinstance(m, FusedQVLoRA)]
    assert len(layers) == TINY.n_layer
    frozen_before = {n: p.detach().clone() for n, p in server.state_dict().items()}
    weights_before = [_effective_weight(layer.eval()) for layer in layers]

    params = [p for part in (client, server) for p in part.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-2)
    client.train()
    server.train()
    for step in range(3):
        ids, mask = _batch(TINY, seed=10 + step)
        logits = server(client(ids, mask), mask)
        loss = F.cross_entropy(logits.reshape(-1, TINY.vocab_size), ids.roll(-1, 1).reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()

    e = TINY.n_embd
    for layer, before in zip(layers, weights_before, strict=True):
        change = _effective_weight(layer.eval()) - before
        assert torch.equal(change[:, e : 2 * e], torch.zeros_like(change[:, e : 2 * e])), "k moved"
        assert change[:, :e].abs().max() > 1e-4 and change[:, 2 * e :].abs().max() > 1e-4
        torch.testing.assert_close(layer.merged_weight() - layer.base.weight, layer.delta_weight())
    for name, value in server.state_dict().items():
        if "lora_" not in name:
            assert torch.equal(value, frozen_before[name]), f"{name} changed"

    snapshot = trainable_state(server)
    torch.manual_seed(0)
    fresh = build_gpt2_split(TINY).server
    load_trainable_state(fresh, snapshot)
    assert all(torch.equal(fresh.state_dict()[n], v) for n, v in snapshot.items())


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    rows = [
        ("name[Aromi], food[Italian]", "Aromi serves Italian food."),
        ("name[Cotto], area[riverside]", "Cotto is by the riverside."),
    ] * 4
    texts = [mr for mr, _ in rows] + [" " + ref for _, ref in rows]
    return load_tokenizer(texts, cache_dir=tmp_path_factory.mktemp("tok"), vocab_size=300)


def test_loss_ignores_padding_and_prompt(tokenizer) -> None:
    rows = [("name[Aromi], food[Italian]", "Aromi serves Italian food.")]
    settings = GPT2Settings(
        n_layer=2, n_embd=32, n_head=4, n_positions=64, vocab_size=tokenizer.vocab_size, seq_len=64
    )
    torch.manual_seed(0)
    split = build_gpt2_split(settings)
    results = []
    for seq_len in (32, 64):
        data = encode_e2e(rows, tokenizer, seq_len)
        assert data.cut_rows == 0
        ids, mask = torch.from_numpy(data.input_ids), torch.from_numpy(data.attention_mask)
        labels = torch.from_numpy(data.labels)
        results.append(token_loss_terms(_split_logits(split, ids, mask), labels))
    (short_sum, short_n), (long_sum, long_n) = results
    target_tokens = len(tokenizer.encode(" " + rows[0][1])) + 1  # + EOS
    assert short_n == long_n == target_tokens
    torch.testing.assert_close(short_sum, long_sum, rtol=1e-5, atol=1e-5)


def test_token_loss_terms_masks_and_smooths() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=gen)
    labels = torch.tensor([[-100, 3, 4, -100, -100], [-100, -100, 1, 2, 6]])
    loss_sum, count = token_loss_terms(logits, labels)
    assert count == 5
    noisy = logits.clone()
    noisy[labels == -100] = 100.0  # positions without a label must not matter
    torch.testing.assert_close(token_loss_terms(noisy, labels)[0], loss_sum)
    keep = labels != -100
    logp = logits[keep].log_softmax(-1)
    nll = -logp.gather(1, labels[keep][:, None]).squeeze(1)
    torch.testing.assert_close(loss_sum, nll.sum())
    smoothed, _ = token_loss_terms(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(smoothed, (0.9 * nll - 0.1 * logp.mean(-1)).sum())
    empty_sum, empty_count = token_loss_terms(logits, torch.full_like(labels, -100))
    assert empty_count == 0 and float(empty_sum) == 0.0


def _mean_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    loss_sum, count = token_loss_terms(logits, labels)
    return loss_sum / count


def test_aux_alignment_step_lowers_gradient_error() -> None:
    torch.manual_seed(0)
    split = build_gpt2_split(TINY)
    aux = split.make_aux().eval()
    split.client.eval()
    split.server.eval()
    # The LM head is the client's embedding matrix, held outside parameters and state_dict.
    assert "lm_weight" not in aux.state_dict()
    assert all(p is not aux.lm_weight for p in aux.parameters())
    assert aux.lm_weight.data_ptr() == split.client.wte.weight.data_ptr()
    assert set(trainable_state(aux)) == set(aux.state_dict())  # the AM trains fully
    sd_before = {k: v.clone() for k, v in aux.state_dict().items()}

    ids, mask = _batch(TINY, n=4, seed=2)
    labels = ids.roll(-1, 1).masked_fill(mask == 0, -100)
    with torch.no_grad():
        z = split.client(ids, mask)
    z_star = z.clone().requires_grad_(True)
    (g_star,) = torch.autograd.grad(_mean_token_loss(split.server(z_star, mask), labels), z_star)

    def alignment_error() -> torch.Tensor:
        z_hat = z.clone().requires_grad_(True)
        loss = _mean_token_loss(aux(z_hat, mask), labels)
        (g_hat,) = torch.autograd.grad(loss, z_hat, create_graph=True)
        return (g_hat - g_star).pow(2).sum()

    opt = torch.optim.Adam(aux.parameters(), lr=1e-3)
    before = alignment_error()
    opt.zero_grad()
    before.backward()  # double backward: through the gradient g_hat into the AM's weights
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in aux.parameters())
    opt.step()
    after = alignment_error().detach()
    assert after < before.detach()
    assert torch.equal(aux.lm_weight, split.client.wte.weight)  # the frozen head did not move
    assert any(not torch.equal(v, sd_before[k]) for k, v in aux.state_dict().items())


def test_make_aux_is_fresh_and_seeded() -> None:
    torch.manual_seed(0)
    split = build_gpt2_split(TINY)
    torch.manual_seed(7)
    a = split.make_aux()
    torch.manual_seed(7)
    b = split.make_aux()
    c = split.make_aux()
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert not torch.equal(a.h[0].attn.c_attn.weight, c.h[0].attn.c_attn.weight)
    assert a.h[0].attn.config._attn_implementation == "eager"
    assert len(a.h) == TINY.aux_blocks
