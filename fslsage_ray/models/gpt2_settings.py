"""The split GPT-2's own settings (`model: {name: gpt2, gpt2: {...}}`).

Torch-free: the config loader builds them where torch may not be installed.
"""

from __future__ import annotations

from dataclasses import dataclass

from fslsage_ray.config.effects import results
from fslsage_ray.config.errors import ConfigError


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True)
class Gpt2Config:
    """The split GPT-2 (model.name=gpt2); the vocabulary size comes from the tokenizer."""

    n_layer: int = results(24)  # GPT-2 medium
    n_embd: int = results(1024)
    n_head: int = results(16)
    n_positions: int = results(1024)
    client_blocks: int = results(1)  # k: blocks on the client, after the embeddings
    aux_blocks: int = results(3)  # fresh blocks in the auxiliary model
    lora_rank: int = results(4)  # LoRA on the query and value projections of client and server
    # blocks (0: no LoRA, the blocks train in full: a model trained from scratch)
    lora_alpha: float = results(32.0)
    lora_dropout: float = results(0.1)
    dropout: float = results(0.1)  # residual, embedding and attention dropout
    pretrained_path: str | None = results(None)  # a local folder saved with save_pretrained;
    # None: random

    def __post_init__(self) -> None:
        for key in ("n_layer", "n_embd", "n_head", "n_positions", "client_blocks"):
            _require(getattr(self, key) >= 1, f"model.gpt2.{key} must be >= 1")
        _require(self.lora_rank >= 0, "model.gpt2.lora_rank must be >= 0 (0: no LoRA)")
        _require(self.aux_blocks >= 0, "model.gpt2.aux_blocks must be >= 0")
        _require(
            self.client_blocks < self.n_layer,
            f"model.gpt2.client_blocks ({self.client_blocks}) must leave the server a block "
            f"(n_layer {self.n_layer})",
        )
        _require(self.n_embd % self.n_head == 0, "model.gpt2.n_embd must be a multiple of n_head")
        for key in ("lora_dropout", "dropout"):
            _require(0 <= getattr(self, key) < 1, f"model.gpt2.{key} must be in [0, 1)")
