"""Beam search over a causal language model given as ``(input_ids, attention_mask) -> logits``.

The decoding the LoRA paper used for GPT-2 on E2E NLG (Hu et al. 2021, "LoRA: Low-Rank
Adaptation of Large Language Models", appendix D, the hyper-parameter table for GPT-2:
beam size 10, length penalty 0.9, no repeated 4-grams), with the new-token limit of the LoRA
repository's E2E command (microsoft/LoRA, examples/NLG/README.md: ``--eval_len 64``; that
command line itself passes ``--length_penalty 0.8``, the paper's table 0.9 for E2E).

The search follows that repository's ``gpt2_beam.py`` in what decides the output:

- each step keeps the ``beam_size`` best continuations of every prompt by summed log-prob;
- a continuation that emits EOS leaves the beam as a finished text scored
  ``summed log-prob / generated_tokens ** length_penalty`` (EOS counted), and its slot dies;
- after the last step the beams still open are scored the same way; the best score wins;
- a token that would repeat a ``no_repeat_ngram``-gram of the generated text is banned (the
  prompt is not searched).

It runs the whole prefix through the model at every step (no key/value cache): slower, but it
is exactly the model's forward pass, split or not, so nothing in the decoding can differ
between the split model and the whole one. Prompts are decoded in batches, right-padded (a
causal model never attends from a real token to later padding); every operation is
deterministic on one device, so the same model and prompts give the same texts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from fslsage_ray.tasks.base import forward

LogitsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class BeamSettings:
    """Decoding settings; the defaults are the LoRA paper's for E2E."""

    beam_size: int = 10
    length_penalty: float = 0.9
    no_repeat_ngram: int = 4  # 0: no ban
    max_new_tokens: int = 64

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam size must be >= 1, got {self.beam_size}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max new tokens must be >= 1, got {self.max_new_tokens}")
        if self.no_repeat_ngram < 0:
            raise ValueError(f"no-repeat n-gram size must be >= 0, got {self.no_repeat_ngram}")


def split_logits_fn(client: nn.Module, server: nn.Module) -> LogitsFn:
    """The split model as one function: client part, then server part, both given the mask
    (as in training and evaluation, through the task layer's ``forward``)."""

    def logits(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        context: Mapping[str, torch.Tensor] = {"attention_mask": attention_mask}
        return forward(server, forward(client, input_ids, context), context)

    return logits


@torch.no_grad()
def beam_search(
    logits_fn: LogitsFn,
    prompts: Sequence[Sequence[int]],
    eos_id: int,
    settings: BeamSettings,
    max_positions: int,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
) -> list[list[int]]:
    """The generated token ids of every prompt (EOS not included), in the prompts' order.

    ``max_positions`` is the model's context (GPT-2's n_positions): a prompt may grow to it,
    so its new-token limit is ``min(max_new_tokens, max_positions - len(prompt))``.
    Prompts are batched ``batch_size`` at a time, shortest first, so a batch pads little.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    for i, prompt in enumerate(prompts):
        if not 1 <= len(prompt) < max_positions:
            raise ValueError(
                f"prompt {i} has {len(prompt)} tokens; it needs 1 to {max_positions - 1} so "
                "that at least one token fits the model's positions"
            )
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    results: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        found = _search_batch(
            logits_fn, [prompts[i] for i in chunk], eos_id, settings, max_positions, device
        )
        for i, tokens in zip(chunk, found, strict=True):
            results[i] = tokens
    return results


def banned_tokens(generated: Sequence[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram already in ``generated`` (its last n - 1 tokens
    followed by them form an n-gram seen before); none while fewer than n - 1 exist."""
    if n < 1 or len(generated) + 1 < n:
        return []
    if n == 1:
        return sorted(set(generated))
    prefix = tuple(generated[len(generated) - (n - 1) :])
    return sorted(
        {
            generated[i + n - 1]
            for i in range(len(generated) - n + 1)
            if tuple(generated[i : i + n - 1]) == prefix
        }
    )


def _search_batch(
    logits_fn: LogitsFn,
    prompts: Sequence[Sequence[int]],
    eos_id: int,
    settings: BeamSettings,
    max_positions: int,
    device: torch.device | str,
) -> list[list[int]]:
    beams, lp = settings.beam_size, settings.length_penalty
    num = len(prompts)
    rows = num * beams
    limits = [min(settings.max_new_tokens, max_positions - len(p)) for p in prompts]
    width = max(len(p) for p in prompts) + max(limits)
    ids = torch.full((rows, width), eos_id, dtype=torch.long)
    for b, prompt in enumerate(prompts):
        ids[b * beams : (b + 1) * beams, : len(prompt)] = torch.tensor(list(prompt))
    lengths = torch.tensor([len(p) for p in prompts]).repeat_interleave(beams)
    # Every beam of a prompt starts as the prompt itself: keep one, or the first step would
    # pick the same continuation beam_size times.
    scores = torch.full((num, beams), -math.inf)
    scores[:, 0] = 0.0
    generated: list[list[int]] = [[] for _ in range(rows)]
    best_score = [-math.inf] * num
    best: list[list[int]] = [[] for _ in range(num)]
    for _ in range(max(limits)):
        live = torch.isfinite(scores.view(-1)).nonzero().squeeze(1)
        if live.numel() == 0:
            break
        length = int(lengths[live].max())
        live_lengths = lengths[live]
        mask = torch.arange(length)[None, :] < live_lengths[:, None]
        logits = logits_fn(ids[live, :length].to(device), mask.to(device))
        last = logits[
            torch.arange(live.numel(), device=logits.device), (live_lengths - 1).to(logits.device)
        ]
        log_probs = torch.log_softmax(last.float().cpu(), dim=-1)
        vocab = log_probs.shape[-1]
        for k, row in enumerate(live.tolist()):
            banned = banned_tokens(generated[row], settings.no_repeat_ngram)
            if banned:
                log_probs[k, banned] = -math.inf
        step_scores = torch.full((rows, vocab), -math.inf)
        step_scores[live] = log_probs + scores.view(-1)[live, None]
        top_scores, top_index = step_scores.view(num, beams * vocab).topk(beams, dim=1)
        source = (torch.arange(num)[:, None] * beams + top_index // vocab).view(-1)
        tokens = (top_index % vocab).view(-1)
        ids, lengths = ids[source], lengths[source]
        ids[torch.arange(rows), lengths] = tokens
        lengths = lengths + 1
        generated = [
            generated[s] + [t] for s, t in zip(source.tolist(), tokens.tolist(), strict=True)
        ]
        scores = top_scores.clone()
        for row in range(rows):
            b, slot = divmod(row, beams)
            score = float(scores[b, slot])
            ended = tokens[row] == eos_id or len(generated[row]) >= limits[b]
            if not ended or math.isinf(score):
                continue
            final = score / len(generated[row]) ** lp
            if final > best_score[b]:
                best_score[b] = final
                text = generated[row]
                best[b] = text[:-1] if text[-1] == eos_id else list(text)
            scores[b, slot] = -math.inf
    return best
