"""The FSL-SAGE AM's eval-mode error figure (dropout off): what it computes, and that
computing it changes nothing that training does."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from tests.lm.lm_helpers import TINY, need_e2e

pytest.importorskip("transformers")

from fslsage_ray.algorithms.align_job import eval_mode, fit_aux_model  # noqa: E402
from fslsage_ray.algorithms.gradients import gradient_estimate, true_cut_gradient  # noqa: E402
from fslsage_ray.models.gpt2 import GPT2Settings, build_gpt2_split  # noqa: E402
from fslsage_ray.tasks.language_model import LanguageModelling  # noqa: E402

SEQ, VOCAB = 8, 40


def _setting():
    """A split GPT-2 with heavy dropout, two alignment batches and both kinds of g*."""
    settings = GPT2Settings(
        n_layer=2, n_embd=16, n_head=2, n_positions=SEQ, vocab_size=VOCAB, seq_len=SEQ,
        aux_blocks=1, lora_rank=0, dropout=0.3,
    )  # fmt: skip
    torch.manual_seed(0)
    split = build_gpt2_split(settings)
    task = LanguageModelling(seq_len=SEQ, vocab_size=VOCAB)
    chunks, eval_targets = [], []
    for _ in range(2):
        ids = torch.randint(0, VOCAB, (4, SEQ))
        context = {"attention_mask": torch.ones(4, SEQ, dtype=torch.long)}
        labels = ids.clone()
        labels[:, :3] = -100  # the loss on target tokens only, as the E2E prompts
        z = split.client(ids, **context).detach()
        g_star, _ = true_cut_gradient(split.server.train(), z, labels, task, context)
        with eval_mode(split.server):
            g_eval, _ = true_cut_gradient(split.server, z, labels, task, context)
        chunks.append((z, labels, context, g_star))
        eval_targets.append(g_eval)
    return split, task, chunks, eval_targets


def _manual_eval_error(aux: nn.Module, chunks, eval_targets, task) -> float:
    """||g_hat - g*||^2 / ||g*||^2 pooled over the batches, AM and g* with dropout off."""
    aux = copy.deepcopy(aux).eval()
    err = norm = 0.0
    for (z, y, context, _), g_eval in zip(chunks, eval_targets, strict=True):
        g_hat, _ = gradient_estimate(aux, z, y, task, context)
        err += float((g_hat - g_eval).pow(2).sum())
        norm += float(g_eval.pow(2).sum())
    return err / norm


def _fit(split, task, chunks, eval_targets):
    torch.manual_seed(1)
    aux = split.make_aux()
    optimizer = torch.optim.AdamW(aux.parameters(), lr=1e-2)
    start = copy.deepcopy(aux)
    torch.manual_seed(7)  # the dropout draws of the fit
    errors = fit_aux_model(aux, optimizer, chunks, 3, task, eval_targets)
    return start, aux, errors, torch.get_rng_state()


def test_the_eval_figure_is_the_error_with_dropout_off_before_and_after_the_fit():
    split, task, chunks, eval_targets = _setting()
    start, fitted, errors, _ = _fit(split, task, chunks, eval_targets)
    assert errors.eval_before == pytest.approx(
        _manual_eval_error(start, chunks, eval_targets, task), rel=1e-6
    )
    assert errors.eval_after == pytest.approx(
        _manual_eval_error(fitted, chunks, eval_targets, task), rel=1e-6
    )
    # Dropout 0.3 makes the train-mode figure another quantity.
    assert errors.before != pytest.approx(errors.eval_before, rel=1e-3)
    assert fitted.training  # the AM goes back to train mode, as the clients use it


def test_the_eval_figure_changes_no_training_number():
    split, task, chunks, eval_targets = _setting()
    _, with_eval, errors, rng_with = _fit(split, task, chunks, eval_targets)
    _, without, plain, rng_without = _fit(split, task, chunks, None)
    assert torch.equal(rng_with, rng_without)
    for (name, a), (_, b) in zip(
        with_eval.state_dict().items(), without.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert (errors.before, errors.after) == (plain.before, plain.after)
    assert math.isnan(plain.eval_before) and math.isnan(plain.eval_after)


class _DrawsInEval(nn.Module):
    def forward(self) -> torch.Tensor:
        return torch.rand(3)


def test_eval_mode_restores_each_modules_mode_and_the_random_state():
    outer = nn.Sequential(nn.Dropout(0.5), _DrawsInEval())
    outer.train()
    outer[0].eval()  # a submodule in its own mode
    state = torch.get_rng_state()
    with eval_mode(outer):
        assert not any(m.training for m in outer.modules())
        outer[1]()
    assert torch.equal(torch.get_rng_state(), state)
    assert outer.training and not outer[0].training and outer[1].training


def test_fsl_sage_rows_carry_the_eval_figures_and_other_methods_nan(run_cache):
    need_e2e()
    inprocess = "runtime.backend=inprocess"
    rows = run_cache([*TINY, inprocess, "algorithm.name=fsl_sage"])
    aligned = [r for r in rows if r["aligned"]]
    assert aligned
    for row in aligned:
        assert 0 < row["am_rel_error_eval_after"] < row["am_rel_error_eval_before"]
    other = run_cache([*TINY, inprocess, "algorithm.name=sflv2"])
    assert all(math.isnan(r["am_rel_error_eval_before"]) for r in other)


@pytest.mark.slow
def test_the_tiny_configs_alignment_fits_the_am(tmp_path):
    """configs/e2e/gpt2_tiny_cpu.yaml up to its second alignment (full 64-sample buffers):
    each alignment leaves the AM well below its error before (about 0.7 -> 0.3 there)."""
    need_e2e()
    from fslsage_ray.config import load_config
    from fslsage_ray.simulation import Simulation

    config = load_config(
        "configs/e2e/gpt2_tiny_cpu.yaml",
        ["runtime.backend=inprocess", "run.rounds=6", "run.checkpoint_every=0",
         f"data.data_dir={TINY[1].split('=', 1)[1]}"],
    )  # fmt: skip
    rows = Simulation(config, run_dir=tmp_path / "run", progress=False).run().to_pylist()
    aligned = [r for r in rows if r["aligned"]]
    assert [r["round"] for r in aligned] == [0, 5]
    for row in aligned:
        assert row["am_rel_error_eval_after"] < 0.6 * row["am_rel_error_eval_before"], row
    assert aligned[-1]["am_rel_error_eval_after"] < 0.45
