"""One frozen base per process (models/frozen.py): clients on a host share LoRA's frozen
weights, training never writes them, snapshots leave them out, and nothing learned changes
with the sharing on or off."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))

from lm_helpers import TINY, need_e2e, run_tiny  # noqa: E402
from run_helpers import assert_same_learning  # noqa: E402

from fslsage_ray.config import load_config  # noqa: E402
from fslsage_ray.experiment import WorldSpec, build_template, load_data  # noqa: E402
from fslsage_ray.models import frozen  # noqa: E402
from fslsage_ray.models.frozen import FrozenWeightChanged, frozen_parameters  # noqa: E402
from fslsage_ray.runtime.client_host import ClientHost  # noqa: E402
from fslsage_ray.runtime.inprocess import InProcessBackend  # noqa: E402

LORA = "model.gpt2.lora_rank=2"
INPROCESS = "runtime.backend=inprocess"


def _host(*overrides: str) -> tuple[ClientHost, WorldSpec]:
    config = load_config(None, [*TINY, LORA, "data.train_subset=40", *overrides])
    data = load_data(config)
    world = WorldSpec(config, data.task)
    parts = {0: np.arange(0, 20), 1: np.arange(20, 40)}
    return ClientHost(world, data.train, parts, torch.device("cpu")), world


def _assert_shared(models) -> None:
    """Every frozen parameter is one object in all models; every trainable one is not."""
    first, *others = models
    base = frozen_parameters(first)
    assert base and all(not p.requires_grad for p in base.values())
    for other in others:
        theirs = frozen_parameters(other)
        assert theirs.keys() == base.keys()
        assert all(theirs[name] is param for name, param in base.items())
        own = {n: p.data_ptr() for n, p in first.named_parameters() if p.requires_grad}
        assert own and all(
            p.data_ptr() != own[n] for n, p in other.named_parameters() if p.requires_grad
        )


def test_two_clients_on_one_host_share_one_frozen_base_and_snapshots_leave_it_out():
    need_e2e()
    host, _ = _host()
    one, two = host.store.get(0), host.store.get(1)
    _assert_shared([one.model, two.model])
    names = frozen_parameters(one.model)
    snap = one.snapshot()
    assert not names.keys() & snap["model"].keys()
    assert snap["model"].keys() == {
        n for n in one.model.state_dict() if n not in names
    }  # adapters and buffers: all a client owns

    # A snapshot written before snapshots left the base out still restores; a base that
    # differs from this run's is refused, not written into every client's shared copy.
    old = dict(snap, model={**snap["model"], **{n: p.detach() for n, p in names.items()}})
    two.restore(old)
    name = next(iter(names))
    changed = dict(old, model={**old["model"], name: old["model"][name] + 1.0})
    with pytest.raises(FrozenWeightChanged, match="shared by every model copy"):
        two.restore(changed)
    assert two.model.get_parameter(name) is names[name]


@pytest.mark.parametrize(
    "overrides",
    [
        ("algorithm.name=fsl_sage",),
        # SplitFed-MS: the server's per-client copies share its base too; "all" transfers
        # carry the base, which clients check and never write
        ("algorithm.name=sflv1", "model.transfer=all"),
    ],
)
def test_sharing_changes_no_result_and_training_leaves_the_base_bit_identical(
    overrides, tmp_path, monkeypatch
):
    need_e2e()
    args = (LORA, INPROCESS, "run.rounds=2", *overrides)
    backends: list[InProcessBackend] = []
    start = InProcessBackend.start

    def keep(self, *a, **k):
        backends.append(self)
        return start(self, *a, **k)

    monkeypatch.setattr(InProcessBackend, "start", keep)
    shared = run_tiny(tmp_path / "shared", *args)
    (backend,) = backends
    host = backend.clients[0].host
    models = [host.store.get(cid).model for cid in host.views]
    _assert_shared(models)
    fresh = frozen_parameters(build_template(backend.world).client)
    for name, param in frozen_parameters(models[0]).items():
        assert torch.equal(param, fresh[name]), name  # as built: no step wrote it

    monkeypatch.setattr(frozen, "SHARE_FROZEN", False)
    separate = run_tiny(tmp_path / "separate", *args)
    assert_same_learning(shared, separate)
    host = backends[1].clients[0].host
    first, second = (host.store.get(cid).model for cid in list(host.views)[:2])
    assert first.get_parameter(next(iter(fresh))) is not second.get_parameter(next(iter(fresh)))
