"""Model stealing by a client: how much of the server's function a client walks away with.

Methods that hand clients an auxiliary model (FSL-SAGE fits AM_i to mimic the server and
sends it down; CSE-FSL and FSL-AN average a locally trained AM) let a client compose its
client part with that AM into a complete model that never needs the server. The probe
measures that model on the test split with the task's own metrics (accuracy and loss for
images, loss and perplexity for text), beside the round's test metrics of the full split
model. The client part is the round's aggregated one (what every client starts the next
round from); the AM is the averaged one, or for FSL-SAGE the server's AM of client
`probes.stealing.client` after this round. Methods without an AM write NaN ("n/a").
"""

from __future__ import annotations

import torch

from fslsage_ray.algorithms.base import Algorithm
from fslsage_ray.algorithms.evaluate import evaluate_split
from fslsage_ray.probes.base import Probe, ProbeRefused, ProbeSite, nan_columns


def stolen_columns(metric_names: tuple[str, ...]) -> tuple[str, ...]:
    """test_acc -> steal_acc: the task's test metrics, measured on the stolen model."""
    return tuple("steal_" + m.removeprefix("test_") for m in metric_names)


class StealingProbe(Probe):
    name = "stealing"

    def columns(self) -> tuple[str, ...]:
        return stolen_columns(self.task.metric_names)

    def not_applicable(self, algorithm: Algorithm) -> str | None:
        if algorithm.server_holds_aux:
            m = self.config.algorithm.num_clients
            if self.settings.client >= m:
                raise ProbeRefused(
                    f"probes.stealing.client={self.settings.client} is not a client "
                    f"(algorithm.num_clients={m})"
                )
            return None
        if "aux" in algorithm.shared_parts:
            return None
        return "the method gives clients no auxiliary model"

    def measure(self, site: ProbeSite, generator: torch.Generator) -> dict[str, float]:
        if site.aux is None:
            return nan_columns(self)
        batch = site.config.run.eval_batch_size
        metrics = evaluate_split(site.task, site.client, site.aux, site.test, batch, site.device)
        return dict(zip(self.columns(), (metrics[m] for m in site.task.metric_names), strict=True))
