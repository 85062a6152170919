"""SplitFed-SS (SFLv2): ONE server model, updated by the clients' batches in sequence.

Clients take turns in client-id order, one whole local epoch each; every batch goes to the
server, which steps and returns dL/dz. Clients are as in SplitFed-MS.
"""

from __future__ import annotations

from fslsage_ray.algorithms.servers import SingleServer
from fslsage_ray.algorithms.sflv1 import SplitFedMS
from fslsage_ray.models.frozen import copy_sharing_frozen


class SplitFedSS(SplitFedMS):
    name = "sflv2"
    label = "SplitFed-SS"
    sequential_clients = True

    def make_server(self, template, own_aux, client_sizes, device):
        return SingleServer(
            copy_sharing_frozen(template.server),
            template.task,
            self.config,
            device,
            returns_gradients=True,
            steps_per_round=sum(self.uploads_per_round(client_sizes).values()),
        )
