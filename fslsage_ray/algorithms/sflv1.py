"""SplitFed-MS (SFLv1): a server copy per client; dL/dz returned every batch; copies averaged.

Clients run in parallel. Each copy has its own optimizer; at round end the main server
averages the copies and the fed server averages the client models.
"""

from __future__ import annotations

from fslsage_ray.algorithms.base import Algorithm
from fslsage_ray.algorithms.clients import GradientReturnClient
from fslsage_ray.algorithms.servers import ServerCopies
from fslsage_ray.models.frozen import copy_sharing_frozen


class SplitFedMS(Algorithm):
    name = "sflv1"
    label = "SplitFed-MS"
    returns_gradients = True
    waits_for = "exchange"

    def upload_every(self) -> int | None:
        return 1

    def make_client(self, cid, view, template, own_aux, generator, device):
        return GradientReturnClient(
            cid, view, self.config, generator, device, copy_sharing_frozen(template.client)
        )

    def make_server(self, template, own_aux, client_sizes, device):
        return ServerCopies(
            copy_sharing_frozen(template.server),
            template.task,
            client_sizes,
            self.config,
            device,
            returns_gradients=True,
            steps_per_round=self.uploads_per_round(client_sizes),
        )
