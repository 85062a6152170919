"""Token-level cross-entropy for language modelling, summed so batches and clients pool exactly.

Labels come pre-shifted from the data layer (``logits[:, t]`` predicts ``labels[:, t]``) with
-100 wherever no loss is taken (prompt, padding), so the loss covers target tokens only and a
sequence padded to any length gives the same terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # label value of positions that carry no loss


def token_loss_terms(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, int]:
    """(sum of per-token cross-entropies, number of counted tokens) over labels != -100.

    The training loss is ``loss_sum / count``. Returning the two parts lets an evaluation
    average over all tokens of a test set rather than over batch means. With
    ``label_smoothing`` e, each term is (1 - e) * NLL + e * (mean over the vocabulary of
    -log p), the LoRA paper's E2E setting (e = 0.1). A batch without target tokens gives
    (0, 0).
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)} (N, T)"
        )
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()
    flat_labels = labels.reshape(-1)
    loss_sum = F.cross_entropy(
        flat_logits,
        flat_labels,
        ignore_index=IGNORE_INDEX,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
    return loss_sum, int((flat_labels != IGNORE_INDEX).sum())
