"""Generation and the E2E metrics: beam search is exact where it can be checked by brute force,
deterministic, and the same through the split model and through the whole one (LoRA merged);
BLEU matches a hand computation; a trained tiny model writes texts far better than an
untrained one."""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from lm_helpers import need_e2e, run_tiny  # noqa: E402

from fslsage_ray.lm.beam_search import (  # noqa: E402
    BeamSettings,
    banned_tokens,
    beam_search,
    split_logits_fn,
)

pytest.importorskip("sacrebleu")


def test_banned_tokens_are_those_completing_a_seen_ngram() -> None:
    # the last two tokens (1, 2) were followed by 3 and by 4 before
    assert banned_tokens([1, 2, 3, 1, 2, 4, 1, 2], 3) == [3, 4]
    assert banned_tokens([1, 2, 3], 4) == []  # too short for a 4-gram to repeat
    assert banned_tokens([5, 6, 5], 2) == [6]
    assert banned_tokens([5, 6, 5], 0) == []


def _markov_logits(table: torch.Tensor):
    """A model whose next-token logits depend only on the last token (a fixed table)."""

    def logits(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return table[ids]  # (N, T, V); position t scores the token after ids[:, t]

    return logits


def _brute_force(table: torch.Tensor, prompt: list[int], eos: int, settings: BeamSettings):
    """Every continuation up to the limit, scored as the beam search scores finished texts."""
    log_probs = torch.log_softmax(table.double(), dim=-1)
    vocab = table.shape[-1]
    best, best_score = None, -math.inf
    for length in range(1, settings.max_new_tokens + 1):
        for tail in itertools.product(range(vocab), repeat=length):
            if eos in tail[:-1]:
                continue  # a text ends at its first EOS
            if length < settings.max_new_tokens and tail[-1] != eos:
                continue  # unfinished and not at the limit: not a candidate
            prev, total = prompt[-1], 0.0
            for token in tail:
                total += float(log_probs[prev, token])
                prev = token
            score = total / length**settings.length_penalty
            if score > best_score:
                best, best_score = list(tail), score
    return best[:-1] if best[-1] == eos else best


@pytest.mark.parametrize("penalty", [0.0, 0.9, 2.0])
def test_wide_beam_finds_the_best_text(penalty) -> None:
    """With a beam wider than the number of open texts, beam search is exhaustive."""
    generator = torch.Generator().manual_seed(3)
    table = torch.randn(4, 4, generator=generator) * 2
    settings = BeamSettings(
        beam_size=64, length_penalty=penalty, no_repeat_ngram=0, max_new_tokens=4
    )
    prompts = [[1], [2, 3], [3]]
    found = beam_search(_markov_logits(table), prompts, 0, settings, max_positions=16)
    assert found == [_brute_force(table, p, 0, settings) for p in prompts]


def test_prompts_are_decoded_independently_of_their_batch() -> None:
    generator = torch.Generator().manual_seed(5)
    table = torch.randn(6, 6, generator=generator)
    settings = BeamSettings(beam_size=3, max_new_tokens=5)
    prompts = [[1, 2], [3], [4, 5, 1], [2]]
    together = beam_search(_markov_logits(table), prompts, 0, settings, 16, batch_size=4)
    alone = [beam_search(_markov_logits(table), [p], 0, settings, 16)[0] for p in prompts]
    assert together == alone
    # the new-token limit stops at the model's positions
    short = beam_search(_markov_logits(table), [[1] * 13], 0, settings, max_positions=16)
    assert len(short[0]) <= 3


def _tiny_lora_split():
    from fslsage_ray.models.gpt2 import GPT2Settings, build_gpt2_split

    settings = GPT2Settings(
        n_layer=3,
        n_embd=32,
        n_head=2,
        n_positions=40,
        vocab_size=50,
        seq_len=40,
        client_blocks=1,
        aux_blocks=1,
        lora_rank=4,
        lora_dropout=0.1,
        dropout=0.1,
    )
    torch.manual_seed(0)
    split = build_gpt2_split(settings)
    with torch.no_grad():  # trained-looking adapters: B != 0, so merging changes weights
        for name, param in [*split.client.named_parameters(), *split.server.named_parameters()]:
            if "lora_b" in name:
                param.normal_(0, 0.5)
    return settings, split


def _whole_model(settings, split):
    """transformers' GPT2LMHeadModel holding the split's weights, LoRA folded into c_attn."""
    from transformers import GPT2LMHeadModel

    from fslsage_ray.lm.generate import merge_lora
    from fslsage_ray.models.gpt2 import gpt2_config

    client, server = merge_lora(split.client), merge_lora(split.server)
    whole = GPT2LMHeadModel(gpt2_config(settings, "sdpa"))
    body = whole.transformer
    with torch.no_grad():
        body.wte.weight.copy_(client.wte.weight)
        body.wpe.weight.copy_(client.wpe.weight)
        for block, source in zip(body.h, [*client.h, *server.h], strict=True):
            block.load_state_dict(source.state_dict())
        body.ln_f.load_state_dict(server.ln_f.state_dict())
    return whole.eval()


def test_decoding_is_deterministic_and_the_same_split_or_whole() -> None:
    settings, split = _tiny_lora_split()
    split.client.eval()
    split.server.eval()
    whole = _whole_model(settings, split)

    def whole_logits(ids, mask):
        return whole(input_ids=ids, attention_mask=mask.long()).logits

    generator = torch.Generator().manual_seed(1)
    prompts = [torch.randint(1, 50, (n,), generator=generator).tolist() for n in (3, 9, 5, 12)]
    beam = BeamSettings(beam_size=4, max_new_tokens=12)
    through_split = beam_search(split_logits_fn(split.client, split.server), prompts, 0, beam, 40)
    again = beam_search(split_logits_fn(split.client, split.server), prompts, 0, beam, 40)
    through_whole = beam_search(whole_logits, prompts, 0, beam, 40, batch_size=3)
    assert through_split == again
    assert through_split == through_whole
    assert any(through_split)  # not all empty: the comparison says something


def test_bleu_matches_a_hand_computation() -> None:
    from fslsage_ray.lm.e2e_metrics import bleu, rouge_l, score_texts

    predictions = ["the cat sat on the mat", "there is a dog here"]
    references = [
        ["the cat sat on the mat today", "a cat sat on a mat"],
        ["there is a dog in the park"],
    ]
    # Clipped n-gram matches over both texts: 1-grams 6+4 of 6+5, 2-grams 5+3 of 5+4,
    # 3-grams 4+2 of 4+3, 4-grams 3+1 of 3+2. Hypothesis length 11; closest reference
    # lengths 6 (exact) and 7, so r = 13 and the brevity penalty is exp(1 - 13/11).
    precisions = [10 / 11, 8 / 9, 6 / 7, 4 / 5]
    expected = 100 * math.exp(1 - 13 / 11) * math.exp(sum(map(math.log, precisions)) / 4)
    result = bleu(predictions, references)
    assert result["bleu"] == pytest.approx(expected, abs=1e-9)
    assert result["precisions"] == pytest.approx([100 * p for p in precisions])
    assert (result["hyp_len"], result["ref_len"]) == (11, 13)
    # the first text is one of its references: ROUGE-L 1 there
    pytest.importorskip("rouge_score")
    assert rouge_l(predictions[:1], [["the cat sat on the mat"]]) == pytest.approx(100.0)
    scores = score_texts(predictions, references)
    assert scores["nist"] is None or scores["nist"] > 0
    assert {"meteor", "cider"} <= set(scores["not_computed"])
    with pytest.raises(ValueError, match="2 predictions but 1"):
        bleu(predictions, references[:1])


def test_trained_model_writes_far_better_texts_than_an_untrained_one(tmp_path) -> None:
    """The tiny config (SplitFed-SS, the fastest learner, 1,200 training rows, 4 rounds)
    against its own untrained start, on the first 24 test MRs with the LoRA paper's decoding;
    through the command line, as a user would."""
    need_e2e()
    from fslsage_ray.cli import main
    from fslsage_ray.lm.generate import PREDICTIONS_FILE, generate_run
    from fslsage_ray.outputs.generation_scores import GENERATION_FILE

    run = tmp_path / "run"
    run_tiny(
        run,
        "runtime.backend=inprocess",
        "algorithm.name=sflv2",
        "data.train_subset=1200",
        "run.checkpoint_every=4",
    )
    untrained = generate_run(run, "initial", limit=24)
    assert main(["generate", str(run), "--limit", "24"]) == 0
    trained = json.loads((run / GENERATION_FILE).read_text())
    lines = (run / PREDICTIONS_FILE).read_text().splitlines()
    assert len(lines) == trained["mrs"] == 24 and trained["round"] == 3
    assert trained["references"] > 24  # several references per MR
    assert trained["decoding"] == {
        "beam_size": 10,
        "length_penalty": 0.9,
        "no_repeat_ngram": 4,
        "max_new_tokens": 64,
    }
    assert trained["bleu"] > untrained["bleu"] + 8, (trained["bleu"], untrained["bleu"])
    assert trained["bleu"] > 8
    # the summary table of `plot`/`compare` gains the scores
    from fslsage_ray.outputs.runs import load_run
    from fslsage_ray.outputs.summary import summarize, to_markdown

    rows = summarize([load_run(run)], None)
    assert rows[0]["bleu"] == pytest.approx(trained["bleu"])
    table = to_markdown(rows, None)
    assert "| BLEU | ROUGE-L |" in table and f"{trained['bleu']:.2f}" in table
    # the same checkpoint decoded again: the same texts
    assert generate_run(run, "last", limit=6)["bleu"] is not None
    assert (run / PREDICTIONS_FILE).read_text().splitlines() == lines[:6]


def test_generate_refuses_a_run_without_checkpoint_in_one_line(tmp_path, capsys) -> None:
    from fslsage_ray.cli import main

    assert main(["generate", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no checkpoint in") and "\n" not in err
    assert main(["generate", str(tmp_path), "--beam", "0"]) == 2
    assert "beam size must be >= 1" in capsys.readouterr().err
