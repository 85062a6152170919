"""FedAvg: each client trains the full model for one local epoch; F averages it (n_i/n)."""

from __future__ import annotations

from torch import nn

from fslsage_ray.algorithms.base import Algorithm
from fslsage_ray.algorithms.clients import FullModelClient
from fslsage_ray.algorithms.servers import NoServer
from fslsage_ray.models import SplitModel
from fslsage_ray.models.frozen import copy_sharing_frozen


class WholeModel(nn.Sequential):
    """Client part then server part, the batch's context passed to both (state dict keys
    as nn.Sequential's, "0." and "1.")."""

    def forward(self, inputs, **context):
        return self[1](self[0](inputs, **context), **context)


class FedAvg(Algorithm):
    name = "fedavg"
    label = "FedAvg"
    shared_parts = ("full",)
    uses_server = False
    waits_for = "full"

    def client_module(self, template: SplitModel) -> nn.Module:
        return WholeModel(template.client, template.server)

    def upload_every(self) -> int | None:
        return None

    def make_client(self, cid, view, template, own_aux, generator, device):
        model = copy_sharing_frozen(self.client_module(template))
        return FullModelClient(cid, view, self.config, generator, device, model)

    def make_server(self, template, own_aux, client_sizes, device):
        return NoServer()
