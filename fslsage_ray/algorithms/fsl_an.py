"""FSL-AN (Han et al. 2021): local-loss split learning, uploading EVERY batch.

The server keeps a copy per client trained on that client's activations, averaged at round
end; the fed server averages client models and AMs; nothing returns to clients.
"""

from __future__ import annotations

import copy

from fslsage_ray.algorithms.base import Algorithm
from fslsage_ray.algorithms.clients import LocalLossClient
from fslsage_ray.algorithms.servers import ServerCopies


class FslAn(Algorithm):
    name = "fsl_an"
    label = "FSL-AN"
    shared_parts = ("client", "aux")
    # Copies are independent, but Ray may run an async actor's calls out of submission
    # order, so a client's own uploads still need the fixed order.
    ordered_uploads = True

    def upload_every(self) -> int | None:
        return 1

    def make_client(self, cid, view, template, own_aux, generator, device):
        return LocalLossClient(
            cid,
            view,
            self.config,
            generator,
            device,
            copy.deepcopy(template.client),
            own_aux,
            upload_every=1,
        )

    def make_server(self, template, own_aux, client_sizes, device):
        return ServerCopies(
            copy.deepcopy(template.server),
            client_sizes,
            self.config,
            device,
            returns_gradients=False,
        )
