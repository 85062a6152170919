"""CSE-FSL (Mu & Shen 2023): client and AM trained on the local loss every batch.

Every q-th batch is uploaded and the single server model takes one step; nothing returns.
The fed server averages client models AND AMs.
"""

from __future__ import annotations

from fslsage_ray.algorithms.base import Algorithm
from fslsage_ray.algorithms.clients import LocalLossClient
from fslsage_ray.algorithms.servers import SingleServer
from fslsage_ray.models.frozen import copy_sharing_frozen


class CseFsl(Algorithm):
    name = "cse_fsl"
    label = "CSE-FSL"
    shared_parts = ("client", "aux")
    ordered_uploads = True
    follows_server_order = True

    def make_client(self, cid, view, template, own_aux, generator, device):
        return LocalLossClient(
            cid,
            view,
            self.config,
            generator,
            device,
            copy_sharing_frozen(template.client),
            own_aux,
            upload_every=self.upload_every(),
        )

    def make_server(self, template, own_aux, client_sizes, device):
        return SingleServer(
            copy_sharing_frozen(template.server),
            template.task,
            self.config,
            device,
            returns_gradients=False,
            steps_per_round=sum(self.uploads_per_round(client_sizes).values()),
        )
