"""GPT-2 cut after its first blocks, with LoRA, for the E2E language-modelling experiment.

Built from ``transformers``' own GPT-2 modules so pretrained checkpoints load unchanged:

- client: token + position embeddings and the first ``client_blocks`` blocks,
  ``client(input_ids, attention_mask) -> hidden (N, T, E)``;
- server: the other blocks, the final LayerNorm and the LM head (the token embedding matrix),
  ``server(hidden, attention_mask) -> logits (N, T, V)``;
- AM (``make_aux``): fresh blocks with eager attention, a LayerNorm and an LM head that reads
  the client's token embedding matrix, ``aux(hidden, attention_mask) -> logits``.

The server needs the (N, T) attention mask as well as the hidden states, so both cross the cut.
Each part builds its own 4-D additive mask (causal and padding) from it: in transformers 5.x a
``GPT2Block`` takes that mask ready-made, the full model normally builds it.

Client and server train only their LoRA adapters (query and value, :mod:`.lora`); everything
else there is frozen, including the embedding matrix, so the server's copy of it as LM head
stays equal to the client's. With ``lora_rank=0`` (a model trained from scratch) everything
trains instead, the server's LM head untied from the client's embeddings; the AM's head stays
the embedding matrix the run started from. The AM trains fully, except its LM head, a
non-persistent buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fslsage_ray.models.errors import ModelError
from fslsage_ray.models.lora import apply_lora
from fslsage_ray.models.split import SplitModel

# Architecture fields a pretrained checkpoint must agree with.
_ARCH_FIELDS = ("n_layer", "n_embd", "n_head", "n_positions", "vocab_size")


@dataclass(frozen=True)
class GPT2Settings:
    """Shape, cut, LoRA and dropout of the split GPT-2 (paper: GPT-2 medium, 1 client block)."""

    n_layer: int
    n_embd: int
    n_head: int
    n_positions: int
    vocab_size: int
    seq_len: int
    client_blocks: int = 1
    aux_blocks: int = 3
    lora_rank: int = 4
    lora_alpha: float = 32.0
    lora_dropout: float = 0.1
    dropout: float = 0.1  # resid_pdrop, embd_pdrop and attn_pdrop
    pretrained_path: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.lora_rank, int) or self.lora_rank < 0:
            raise ModelError(f"gpt2: lora_rank must be an int >= 0, got {self.lora_rank!r}")
        for name in (*_ARCH_FIELDS, "seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ModelError(f"gpt2: {name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head:
            raise ModelError(f"gpt2: n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if not 1 <= self.client_blocks < self.n_layer:
            raise ModelError(
                f"gpt2: client_blocks must be in [1, {self.n_layer - 1}] so both sides hold a "
                f"block, got {self.client_blocks}"
            )
        if self.aux_blocks < 0:
            raise ModelError(f"gpt2: aux_blocks must be >= 0, got {self.aux_blocks}")
        if self.seq_len > self.n_positions:
            raise ModelError(f"gpt2: seq_len {self.seq_len} exceeds n_positions {self.n_positions}")
        for name in ("lora_dropout", "dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ModelError(f"gpt2: {name} must be in [0, 1), got {getattr(self, name)}")


def gpt2_config(settings: GPT2Settings, attn_implementation: str, n_layer: int | None = None):
    """A ``GPT2Config`` for these settings; token ids unset (they live in the tokenizer)."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=settings.vocab_size,
        n_positions=settings.n_positions,
        n_embd=settings.n_embd,
        n_layer=settings.n_layer if n_layer is None else n_layer,
        n_head=settings.n_head,
        resid_pdrop=settings.dropout,
        embd_pdrop=settings.dropout,
        attn_pdrop=settings.dropout,
        bos_token_id=None,
        eos_token_id=None,
        attn_implementation=attn_implementation,
    )


def additive_attention_mask(
    attention_mask: torch.Tensor | None, length: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """(N or 1, 1, T, T) mask added to attention scores: 0 where query i may see key j.

    Allowed means j <= i (causal) and key j is a real token (``attention_mask[n, j]`` true).
    Blocked entries get the dtype's most negative value rather than -inf, so a row with
    nothing to attend to gives a uniform softmax instead of NaN. Eager and SDPA attention both
    accept this float form.
    """
    allowed = torch.ones(length, length, dtype=torch.bool, device=device).tril()[None, None]
    if attention_mask is not None:
        if attention_mask.ndim != 2 or attention_mask.shape[1] != length:
            raise ValueError(
                f"attention_mask must have shape (N, {length}), got {tuple(attention_mask.shape)}"
            )
        allowed = allowed & attention_mask.to(device=device, dtype=torch.bool)[:, None, None, :]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


def run_blocks(
    blocks: nn.ModuleList, hidden: torch.Tensor, attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """Hidden states through GPT-2 blocks with the causal + padding mask built once."""
    mask = additive_attention_mask(attention_mask, hidden.shape[1], hidden.dtype, hidden.device)
    for block in blocks:
        out = block(hidden, attention_mask=mask)
        hidden = out[0] if isinstance(out, tuple) else out  # 4.x blocks returned tuples
    return hidden


class GPT2Client(nn.Module):
    """Embeddings and the first blocks: (input_ids, attention_mask) -> hidden (N, T, E)."""

    def __init__(self, wte: nn.Embedding, wpe: nn.Embedding, drop: nn.Module, blocks) -> None:
        super().__init__()
        self.wte = wte
        self.wpe = wpe
        self.drop = drop
        self.h = nn.ModuleList(blocks)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = self.drop(self.wte(input_ids) + self.wpe(positions))
        return run_blocks(self.h, hidden, attention_mask)


class GPT2Server(nn.Module):
    """The remaining blocks, final LayerNorm and LM head: hidden -> logits (N, T, V).

    The LM head is a frozen copy of the token embedding matrix (GPT-2 ties the two); it is a
    copy rather than a shared tensor because server and client live in different processes
    and devices, and it is frozen, so it cannot drift from the client's.
    """

    def __init__(self, blocks, ln_f: nn.LayerNorm, embedding_weight: torch.Tensor) -> None:
        super().__init__()
        self.h = nn.ModuleList(blocks)
        self.ln_f = ln_f
        vocab, embd = embedding_weight.shape
        self.lm_head = nn.Linear(embd, vocab, bias=False)
        self.lm_head.weight = nn.Parameter(embedding_weight.detach().clone(), requires_grad=False)

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.lm_head(self.ln_f(run_blocks(self.h, hidden, attention_mask)))


class GPT2Aux(nn.Module):
    """FSL-SAGE's AM for GPT-2: fresh blocks, LayerNorm, LM head from the client's embeddings.

    The LM head weight is a non-persistent buffer: it is not a parameter (alignment must not
    move it) and not in ``state_dict`` (an AM transfer does not carry it; the receiver ties
    its own AM to its own client's embedding matrix).
    """

    lm_weight: torch.Tensor

    def __init__(self, blocks, ln_f: nn.LayerNorm, embedding_weight: torch.Tensor) -> None:
        super().__init__()
        self.h = nn.ModuleList(blocks)
        self.ln_f = ln_f
        self.register_buffer("lm_weight", embedding_weight.detach(), persistent=False)

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return F.linear(self.ln_f(run_blocks(self.h, hidden, attention_mask)), self.lm_weight)


def _load_pretrained(settings: GPT2Settings):
    """GPT2LMHeadModel from a local folder, after checking it has the configured shape."""
    from transformers import GPT2Config, GPT2LMHeadModel

    path = Path(str(settings.pretrained_path)).expanduser()
    local = path.is_dir()
    source = path if local else str(settings.pretrained_path)  # else a hub name, if reachable
    try:
        config = GPT2Config.from_pretrained(source, local_files_only=local)
    except (OSError, ValueError) as exc:  # no such folder; hub unreachable or bad name
        raise ModelError(
            f"gpt2: pretrained_path {str(settings.pretrained_path)!r} is not a local folder "
            f"and could not be loaded as a hub name ({str(exc).splitlines()[0]})"
        ) from exc
    wrong = [
        f"{name} {getattr(config, name)} (settings say {getattr(settings, name)})"
        for name in _ARCH_FIELDS
        if getattr(config, name) != getattr(settings, name)
    ]
    if wrong:
        raise ModelError(f"gpt2: checkpoint {path} differs from the settings: {'; '.join(wrong)}")
    return GPT2LMHeadModel.from_pretrained(
        source,
        local_files_only=local,
        dtype=torch.float32,
        attn_implementation="sdpa",
        resid_pdrop=settings.dropout,
        embd_pdrop=settings.dropout,
        attn_pdrop=settings.dropout,
    )


def _init_aux_blocks(blocks: nn.ModuleList, initializer_range: float) -> None:
    """GPT-2's initialisation: N(0, 0.02) weights, zero biases, residual projections scaled
    by 1/sqrt(2 * depth) (transformers applies the same in ``GPT2PreTrainedModel``)."""
    residual_std = initializer_range / math.sqrt(2 * max(len(blocks), 1))
    for block in blocks:
        for layer in (block.attn.c_attn, block.mlp.c_fc):
            nn.init.normal_(layer.weight, std=initializer_range)
            nn.init.zeros_(layer.bias)
        for layer in (block.attn.c_proj, block.mlp.c_proj):
            nn.init.normal_(layer.weight, std=residual_std)
            nn.init.zeros_(layer.bias)


def build_gpt2_split(settings: GPT2Settings) -> SplitModel:
    """Split GPT-2 with LoRA on every client and server block; random init or a checkpoint.

    Random weights (and the LoRA A matrices, and every AM) come from the global torch RNG, so
    ``torch.manual_seed`` before the call makes the result reproducible.
    """
    from transformers import GPT2LMHeadModel
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    if settings.pretrained_path:
        full = _load_pretrained(settings)
    else:
        full = GPT2LMHeadModel(gpt2_config(settings, "sdpa"))
    full = full.float()
    body = full.transformer
    k = settings.client_blocks
    client = GPT2Client(body.wte, body.wpe, body.drop, list(body.h[:k]))
    server = GPT2Server(list(body.h[k:]), body.ln_f, body.wte.weight)
    if settings.lora_rank:
        for part in (client, server):
            apply_lora(part, settings.lora_rank, settings.lora_alpha, settings.lora_dropout)
    else:
        # Trained from scratch: every weight trains, and the server's LM head, a copy of the
        # embedding matrix at the start, then learns on its own (GPT-2's tie is undone).
        server.lm_head.weight.requires_grad_(True)
    aux_config = gpt2_config(settings, "eager", n_layer=settings.aux_blocks)
    eps = aux_config.layer_norm_epsilon

    def make_aux() -> GPT2Aux:
        # Eager attention: torch's fused SDPA kernels have no double backward, and alignment
        # differentiates the AM's input gradient.
        blocks = nn.ModuleList(
            GPT2Block(aux_config, layer_idx=i) for i in range(settings.aux_blocks)
        )
        _init_aux_blocks(blocks, aux_config.initializer_range)
        return GPT2Aux(blocks, nn.LayerNorm(settings.n_embd, eps=eps), client.wte.weight)

    return SplitModel(
        client=client,
        server=server,
        make_aux=make_aux,
        cut_shape=(settings.seq_len, settings.n_embd),
    )


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the parameters that require grad: what a ``trainable`` model transfer sends.

    Copies, so a snapshot does not change under later optimizer steps (the LoRA adapters are
    small; an AM's blocks are not, so take one only when it is sent).
    """
    return {
        name: param.detach().clone()
        for name, param in module.named_parameters()
        if param.requires_grad
    }


def load_trainable_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a :func:`trainable_state` into ``module``; every trainable parameter must be there."""
    expected = {name for name, p in module.named_parameters() if p.requires_grad}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ValueError(f"trainable state mismatch: missing {missing[:3]}, unexpected {extra[:3]}")
    with torch.no_grad():
        params = dict(module.named_parameters())
        for name, value in state.items():
            params[name].copy_(value)
