"""The authors' byte count for the split GPT-2, as a second view of the ledger (off by default).

Why: the paper's language-model figure plots loss against the bytes their code books, which
differ from what this project's ledger books (docs/lm_authors_code.md, items 5 and 6). To
redraw their communication axis, each message the ledger books (or the plan predicts) is
re-priced here as their code would have priced it; the project's own ledger is untouched.

Read from srijith1996/FSL-SAGE, branch llm, commit b0655fa (line numbers as `git show
llm:PATH | cat -n` prints them), for GPT-2 with E = n_embd, H = n_head, V = vocabulary,
P = n_ctx = n_positions (their model/gpt2.yaml:10-11), T = seq_len, r = LoRA rank, fp32:

- A model transfer costs `calculate_load` (src/utils/utils.py:17-27): every parameter and
  every buffer. A block has 12E^2 + 13E parameters (src/models/gpt2.py:214-221 with
  :58-61, :71-78, :200-205) plus LoRA's A (2r x E) and B (2E x r) on the merged query/value
  projection (:102-110: 4rE), and a causal-mask buffer of P x P floats (:95-98).
- Client part: token and position embeddings and its blocks (src/models/gpt2.py:278-283).
  Every participant's aggregation books it twice, down and up (src/algos/__init__.py:132-134).
- AM: its blocks (LoRA too: the common model options reach it, src/main.py:123-134), a final
  LayerNorm (src/models/aux_models/gpt2.py:18-22) and an LM head tied to the client's token
  embedding (:60, src/models/gpt2.py:239-242), so its V x E matrix is booked with every AM:
  FSL-SAGE's aligned AM (src/algos/fsl_sage.py:103-106), CSE-FSL's averaged AM, down and up
  (src/algos/cse_fsl.py:118-120).
- FedAvg's whole model (src/algos/baselines.py:22-25): client and server parts, the
  server's head tied to the client's embedding, so counted once (src/models/gpt2.py:426-436).
- An upload books the hidden states (T x E per sample) and `splitting_outputs[1:]`
  (src/algos/__init__.py:160-174): the "presents" list, a (2, B, H, T, E/H) stack per block
  that has run (src/models/gpt2.py:193), and the input shape, a torch.Size of 2: 16 bytes.
  FSL-SAGE and CSE-FSL book it after the AM's forward pass appended its blocks' presents to
  the same list (src/algos/fsl_sage.py:52-73, src/algos/cse_fsl.py:59-86,
  src/models/aux_models/gpt2.py:34-38); SplitFed before any other pass
  (src/algos/baselines.py:78-93, :160-175): the client's blocks only.
- SplitFed's reply is the gradient of the hidden states (src/algos/baselines.py:107-109,
  :189-191), as here. Labels and attention masks are never booked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fslsage_ray.algorithms.ledger import GIB, KINDS
from fslsage_ray.config.errors import ConfigError
from fslsage_ray.config.schema import Config
from fslsage_ray.tasks.base import PayloadSizes

FLOAT = 4  # their runs are fp32
SHAPE_BYTES = 2 * 8  # the upload's input_shape, torch.Size([B, T]): 8 bytes per entry
# Methods their llm branch runs (src/algos/*.py), by this project's name, and whether the AM's
# forward pass has added its presents to the upload before it is booked.
AM_BEFORE_UPLOAD = {
    "fsl_sage": True,
    "fsl_sage_lazy": True,
    "cse_fsl": True,
    "sflv1": False,
    "sflv2": False,
    "fedavg": False,
}
COLUMNS = ("authors_comm_bytes", "authors_comm_bytes_cum", "authors_comm_gib_cum")


@dataclass(frozen=True)
class AuthorsSizes:
    """What their code books, in bytes: per model transfer, and per uploaded sample."""

    client_model: int
    aux_model: int
    full_model: int
    upload_per_sample: int  # hidden states and the presents booked with them
    hidden_per_sample: int  # T x E floats: SplitFed's gradient reply

    def upload(self, samples: int) -> int:
        return samples * self.upload_per_sample + SHAPE_BYTES


def block_parameters(n_embd: int, lora_rank: int) -> int:
    e = n_embd
    return 12 * e * e + 13 * e + 4 * lora_rank * e


def authors_sizes(config: Config, vocab_size: int, seq_len: int) -> AuthorsSizes:
    """Their calculate_load and upload sizes for this config's GPT-2 (module docstring)."""
    check_authors_view(config)
    g = config.model.gpt2
    e, p, t = g.n_embd, g.n_positions, seq_len
    block = (block_parameters(e, g.lora_rank) + p * p) * FLOAT  # weights and causal mask
    embeddings = (vocab_size + p) * e * FLOAT
    client = embeddings + g.client_blocks * block
    aux = g.aux_blocks * block + 2 * e * FLOAT + vocab_size * e * FLOAT
    server = (g.n_layer - g.client_blocks) * block + 2 * e * FLOAT  # its head is the client's
    presents_per_block = 2 * t * e * FLOAT  # (2, H, T, E/H) per sample
    blocks_run = g.client_blocks
    if AM_BEFORE_UPLOAD[config.algorithm.name]:
        blocks_run += g.aux_blocks
    hidden = t * e * FLOAT
    return AuthorsSizes(
        client_model=client,
        aux_model=aux,
        full_model=client + server,
        upload_per_sample=hidden + blocks_run * presents_per_block,
        hidden_per_sample=hidden,
    )


def check_authors_view(config: Config) -> None:
    """Refuse, in one line, a run the authors' count is not defined for."""
    if config.model.name != "gpt2":
        raise ConfigError(
            "the authors' byte count (run.authors_ledger, plan --ledger authors) is that of "
            f"their GPT-2 code; model.name is {config.model.name!r}"
        )
    if config.algorithm.name not in AM_BEFORE_UPLOAD:
        raise ConfigError(
            f"the authors' code has no {config.algorithm.name!r} to count bytes as "
            f"(run.authors_ledger, plan --ledger authors); it has {sorted(AM_BEFORE_UPLOAD)}"
        )


class AuthorsView:
    """Re-prices this project's messages as the authors' code books them.

    A message is (cid, step, kind, bytes) as the ledger records it or the plan predicts it;
    an upload's sample count is read from its bytes (ours are samples x per-sample size).
    """

    def __init__(self, sizes: AuthorsSizes, ours: PayloadSizes) -> None:
        self.sizes = sizes
        self.ours_upload = ours.smashed + ours.context
        self.ours_grad = ours.smashed

    def message_bytes(self, kind: str, nbytes: int) -> int:
        s = self.sizes
        fixed = {
            "client_model.down": s.client_model,
            "client_model.up": s.client_model,
            "aux_model.down": s.aux_model,
            "aux_model.up": s.aux_model,
            "full_model.down": s.full_model,
            "full_model.up": s.full_model,
            "labels.up": 0,
        }
        if kind in fixed:
            return fixed[kind]
        if kind == "smashed.up":
            return s.upload(_samples(nbytes, self.ours_upload, kind))
        if kind == "grad.down":
            return _samples(nbytes, self.ours_grad, kind) * s.hidden_per_sample
        raise KeyError(f"unknown message kind {kind!r}; known: {KINDS}")

    def round_bytes(self, messages: Iterable[tuple[str, int]]) -> dict[str, int]:
        """{kind: bytes} of one round's messages, given as (kind, our bytes), in the
        authors' count (kinds that cost them 0 left out)."""
        counts: dict[str, int] = {}
        for kind, nbytes in messages:
            counts[kind] = counts.get(kind, 0) + self.message_bytes(kind, nbytes)
        return {k: counts[k] for k in KINDS if counts.get(k)}

    def columns(self, round_total: int, previous: Mapping[str, object] | None) -> dict[str, float]:
        """The metrics row's columns, cumulative over the run (resume: from the last row)."""
        before = int(previous["authors_comm_bytes_cum"]) if previous else 0
        cumulative = before + round_total
        return {
            "authors_comm_bytes": round_total,
            "authors_comm_bytes_cum": cumulative,
            "authors_comm_gib_cum": cumulative / GIB,
        }


def _samples(nbytes: int, per_sample: int, kind: str) -> int:
    samples, rest = divmod(int(nbytes), per_sample)
    if rest:
        raise ValueError(f"{kind} of {nbytes} bytes is not a whole number of samples")
    return samples
