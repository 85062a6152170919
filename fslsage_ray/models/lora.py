"""LoRA on the query and value projections of GPT-2's fused attention input ``c_attn``.

GPT-2 computes q, k and v with one ``Conv1D`` (weight (E, 3E), y = x @ W + b). The LoRA
paper's GPT-2 setting, which the FSL-SAGE authors follow, adapts only q and v, each with its
own rank-r pair (A, B), and leaves k untouched. peft cannot express that on a fused layer: its
LoRA on ``c_attn`` is one A (shared by q, k and v) and one B over all 3E outputs, so k would be
adapted too and the adapter would hold more parameters than the paper's. Hence this small
wrapper: two A/B pairs, B zero at start (the wrapped layer equals the base layer until the
first step), the base weight frozen, dropout on the input of the LoRA path only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LORA_MARKER = "lora_"  # every adapter parameter's name contains this


class FusedQVLoRA(nn.Module):
    """``base(x)`` plus scaling * B(A(dropout(x))) added to the q and v thirds of the output."""

    def __init__(self, base: nn.Module, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        weight = base.weight
        if weight.ndim != 2 or weight.shape[1] % 3:
            raise ValueError(f"expected a fused (in, 3*out) weight, got {tuple(weight.shape)}")
        self.base = base
        for param in self.base.parameters():
            param.requires_grad_(False)
        in_features, out3 = weight.shape
        self.out_features = out3 // 3
        self.rank = rank
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout)
        factory = {"device": weight.device, "dtype": weight.dtype}
        # A as in the LoRA paper (Kaiming-uniform, global torch RNG), B zero so delta W = 0.
        self.lora_a_q = nn.Parameter(torch.empty(rank, in_features, **factory))
        self.lora_b_q = nn.Parameter(torch.zeros(self.out_features, rank, **factory))
        self.lora_a_v = nn.Parameter(torch.empty(rank, in_features, **factory))
        self.lora_b_v = nn.Parameter(torch.zeros(self.out_features, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_a_q, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.lora_a_v, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.base(x).split(self.out_features, dim=-1)
        h = self.dropout(x)  # one dropout mask for both adapters, as in the LoRA paper's code
        dq = (h @ self.lora_a_q.t()) @ self.lora_b_q.t()
        dv = (h @ self.lora_a_v.t()) @ self.lora_b_v.t()
        return torch.cat((q + self.scaling * dq, k, v + self.scaling * dv), dim=-1)

    def delta_weight(self) -> torch.Tensor:
        """The adapters' change to the fused weight, shape (in, 3*out); the k third is zero."""
        dq = (self.lora_b_q @ self.lora_a_q).t() * self.scaling
        dv = (self.lora_b_v @ self.lora_a_v).t() * self.scaling
        return torch.cat((dq, torch.zeros_like(dq), dv), dim=1)

    def merged_weight(self) -> torch.Tensor:
        """The effective fused weight base + delta (what merging the adapter would store)."""
        return self.base.weight + self.delta_weight()


def apply_lora(module: nn.Module, rank: int, alpha: float, dropout: float) -> list[FusedQVLoRA]:
    """Wrap every GPT-2 self-attention ``c_attn`` inside ``module``; freeze all else.

    Afterwards only the adapter matrices require gradients. Returns the wrappers, in module
    order. A ``c_attn`` that is already wrapped is left as it is.
    """
    from transformers.models.gpt2.modeling_gpt2 import GPT2Attention

    wrapped: list[FusedQVLoRA] = []
    for sub in list(module.modules()):
        if not isinstance(sub, GPT2Attention) or sub.is_cross_attention:
            continue
        if not isinstance(sub.c_attn, FusedQVLoRA):
            sub.c_attn = FusedQVLoRA(sub.c_attn, rank, alpha, dropout)
        wrapped.append(sub.c_attn)
    for name, param in module.named_parameters():
        param.requires_grad_(LORA_MARKER in name.rsplit(".", 1)[-1])
    return wrapped
