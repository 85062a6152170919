"""SplitFed-SS (SFLv2): ONE server model, updated by the clients' batches in sequence.

Clients take turns in client-id order, one whole local epoch each; every batch goes to the
server, which steps and returns dL/dz.
"""

from __future__ import annotations

import copy

from fslsage_ray.algorithms.base import Algorithm
from fslsage_ray.algorithms.clients import GradientReturnClient
from fslsage_ray.algorithms.servers import SingleServer


class SplitFedSS(Algorithm):
    name = "sflv2"
    label = "SplitFed-SS"
    returns_gradients = True
    sequential_clients = True

    def upload_every(self) -> int | None:
        return 1

    def make_client(self, cid, view, template, own_aux, generator, device):
        return GradientReturnClient(
            cid, view, self.config, generator, device, copy.deepcopy(template.client)
        )

    def make_server(self, template, own_aux, client_sizes, device):
        return SingleServer(
            copy.deepcopy(template.server), self.config, device, returns_gradients=True
        )
