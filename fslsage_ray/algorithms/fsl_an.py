"""FSL-AN (Han et al. 2021): local-loss split learning, uploading EVERY batch.

Clients are as in CSE-FSL (client part and AM trained on the local loss, both averaged by
the fed server). The server keeps a copy per client trained on that client's activations,
averaged at round end; nothing returns to clients.
"""

from __future__ import annotations

from fslsage_ray.algorithms.cse_fsl import CseFsl
from fslsage_ray.algorithms.servers import ServerCopies
from fslsage_ray.models.frozen import copy_sharing_frozen


class FslAn(CseFsl):
    name = "fsl_an"
    label = "FSL-AN"
    # Copies are independent, but Ray may run an async actor's calls out of submission
    # order, so a client's own uploads still need the fixed order (inherited).

    def upload_every(self) -> int | None:
        return 1

    def make_server(self, template, own_aux, client_sizes, device):
        return ServerCopies(
            copy_sharing_frozen(template.server),
            template.task,
            client_sizes,
            self.config,
            device,
            returns_gradients=False,
            steps_per_round=self.uploads_per_round(client_sizes),
        )
