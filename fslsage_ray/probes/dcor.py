"""Distance correlation between each probe input and what crosses the cut for it: the
dependence NoPeek (Vepakomma et al. 2020) minimises.

The estimator is the bias-corrected (U-centred) squared distance correlation of Székely and
Rizzo (2014, "Partial distance correlation with methods for dissimilarities"): unbiased for
the population dCor², so a run with few probe examples does not read as leaking when inputs
and activations are independent (the plain V-statistic is biased upwards, towards 1 for
high-dimensional data). It is 1 when the activations are the inputs (up to scale and a
rotation), about 0 when they are independent, and may come out slightly negative then.

Images: one sample per probe image (its normalised pixels, its flattened activations).
Text: one sample per token position that the attention mask counts, drawn at most
`max_positions` from the probe set with the probe's generator; the input at a position is
its token as a one-hot vector (distance sqrt(2) between different tokens, 0 between equal
ones), the activation is the hidden state at that position. Positions of one sequence are not
independent, so the text value measures how much each position's state reveals its token.
"""

from __future__ import annotations

import torch

from fslsage_ray.algorithms.base import Algorithm
from fslsage_ray.probes.base import Probe, ProbeSite
from fslsage_ray.probes.cut import through_cut


def u_centred(distances: torch.Tensor) -> torch.Tensor:
    """The U-centred matrix of a distance matrix (n >= 4): row and column sums over n - 2,
    the total over (n - 1)(n - 2), zero diagonal."""
    n = distances.shape[0]
    rows = distances.sum(dim=1, keepdim=True)
    cols = distances.sum(dim=0, keepdim=True)
    total = distances.sum()
    out = distances - rows / (n - 2) - cols / (n - 2) + total / ((n - 1) * (n - 2))
    out.fill_diagonal_(0.0)
    return out


def u_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(A . B) = sum over i != j of A_ij B_ij / (n (n - 3)), for U-centred A and B."""
    n = a.shape[0]
    return (a * b).sum() / (n * (n - 3))


def distance_correlation(x: torch.Tensor, z: torch.Tensor) -> float:
    """Bias-corrected squared distance correlation of paired rows x[i], z[i] (each flattened);
    0.0 when either side has no spread (a constant is independent of anything)."""
    if x.shape[0] != z.shape[0]:
        raise ValueError(f"x and z must pair rows: {x.shape[0]} vs {z.shape[0]}")
    if x.shape[0] < 4:
        raise ValueError(f"distance correlation needs at least 4 rows, got {x.shape[0]}")
    x = x.reshape(len(x), -1).double()
    z = z.reshape(len(z), -1).double()
    a = u_centred(torch.cdist(x, x))
    b = u_centred(torch.cdist(z, z))
    aa, bb = u_product(a, a), u_product(b, b)
    if aa <= 0 or bb <= 0:
        return 0.0
    return float(u_product(a, b) / torch.sqrt(aa * bb))


def token_samples(
    tokens: torch.Tensor,
    states: torch.Tensor,
    mask: torch.Tensor,
    max_positions: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(one-hot tokens, hidden states) at counted positions, at most `max_positions` drawn
    without replacement; the one-hot width is the largest token id present + 1."""
    where = mask.reshape(-1).bool().nonzero().squeeze(1)
    if len(where) > max_positions:
        pick = torch.randperm(len(where), generator=generator)[:max_positions]
        where = where[pick.sort().values]
    ids = tokens.reshape(-1)[where].long()
    one_hot = torch.nn.functional.one_hot(ids, int(ids.max()) + 1).double()
    return one_hot, states.reshape(-1, states.shape[-1])[where]


class DistanceCorrelationProbe(Probe):
    name = "dcor"

    def columns(self) -> tuple[str, ...]:
        return ("dcor",)

    def not_applicable(self, algorithm: Algorithm) -> str | None:
        if "full" in algorithm.shared_parts:
            return "nothing crosses a cut: clients send whole models"
        return None

    def measure(self, site: ProbeSite, generator: torch.Generator) -> dict[str, float]:
        batch = site.config.run.eval_batch_size
        cut = through_cut(site.task, site.client, site.probe_set, batch, site.device)
        if cut.mask is None:
            return {"dcor": distance_correlation(cut.inputs, cut.activations)}
        x, z = token_samples(
            cut.inputs, cut.activations, cut.mask, self.settings.max_positions, generator
        )
        return {"dcor": distance_correlation(x, z)}
