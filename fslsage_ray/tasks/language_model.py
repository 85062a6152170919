"""Language modelling (E2E): token ids in, next-token cross-entropy on target tokens out.

The loss is a mean over the batch's target tokens (prompt and padding carry label -100), so
the task's "count" is target tokens, not samples; FSL-SAGE's lazy alignment divides by it.
The attention mask travels with the activations: the server needs it to continue.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from fslsage_ray.tasks.base import Arrays, Batch, PayloadSizes, Sums, Task, forward
from fslsage_ray.tasks.text_loss import IGNORE_INDEX, token_loss_terms

INPUT_IDS, ATTENTION_MASK, LABELS = "input_ids", "attention_mask", "labels"
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class LanguageModelling(Task):
    """Fixed-length sequences; the headline is test loss (lower is better)."""

    seq_len: int
    vocab_size: int
    label_smoothing: float = 0.0  # training losses only; test loss is never smoothed
    tokenizer_json: str = field(default="", repr=False)  # kept with the run (save_artifacts)

    headline: ClassVar[str] = "test_loss"
    goal: ClassVar[str] = "min"
    metric_names: ClassVar[tuple[str, ...]] = ("test_loss", "test_ppl")
    stochastic_steps: ClassVar[bool] = True  # GPT-2 and LoRA dropout

    def batch(self, arrays: Arrays, idx, generator, train: bool, device) -> Batch:
        def rows(name: str) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(arrays[name][idx])).to(device)

        return Batch(rows(INPUT_IDS), rows(LABELS), {ATTENTION_MASK: rows(ATTENTION_MASK)})

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss_sum, count = token_loss_terms(output, targets, self.label_smoothing)
        return loss_sum / max(count, 1)

    def loss_count(self, targets: torch.Tensor) -> int:
        return int((targets != IGNORE_INDEX).sum())

    batched_evaluation: ClassVar[bool] = True

    @torch.no_grad()
    def eval_batch_sums(
        self, client: nn.Module, server: nn.Module, arrays: Arrays, start: int, stop: int, device
    ) -> Sums:
        """Summed cross-entropy over the batch's target tokens, and how many there are."""
        batch = self.batch(arrays, np.arange(start, stop), None, False, device)
        logits = forward(server, forward(client, batch.inputs, batch.context), batch.context)
        part_sum, part_count = token_loss_terms(logits, batch.targets)
        return {"loss_sum": float(part_sum), "tokens": part_count}

    def eval_metrics(self, sums: Sums, rows: int) -> dict[str, float]:
        """Mean cross-entropy over every target token of the test set, and its perplexity."""
        count = sums["tokens"]
        loss = sums["loss_sum"] / count if count else float("nan")
        return {"test_loss": loss, "test_ppl": math.exp(loss) if count else float("nan")}

    def payload_sizes(self, cut_shape: tuple[int, ...]) -> PayloadSizes:
        """Hidden states in fp32, the attention mask (one byte a token), int64 targets."""
        return PayloadSizes(
            smashed=int(np.prod(cut_shape)) * 4, context=self.seq_len, targets=self.seq_len * 8
        )

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.tokenizer_json.encode()).hexdigest()[:16]
        return f"vocabulary of {self.vocab_size} tokens, tokenizer {digest}"

    def save_artifacts(self, folder: Path) -> None:
        if self.tokenizer_json:
            (Path(folder) / TOKENIZER_FILE).write_text(self.tokenizer_json)
