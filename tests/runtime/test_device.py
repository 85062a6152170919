"""runtime.device picks the torch device, and a broken promise of CUDA is an error."""

from __future__ import annotations

import pytest
import torch

from fslsage_ray.config import ConfigError, load_config
from fslsage_ray.runtime.device import choose_device
from fslsage_ray.simulation import make_backend

NO_CUDA = not torch.cuda.is_available()


def test_cpu_is_always_cpu() -> None:
    assert choose_device("cpu") == torch.device("cpu")
    assert choose_device("cpu", gpu_assigned=False) == torch.device("cpu")


def test_auto_never_takes_a_gpu_that_was_not_assigned() -> None:
    assert choose_device("auto", gpu_assigned=False) == torch.device("cpu")


def test_auto_follows_what_torch_sees() -> None:
    expected = "cpu" if NO_CUDA else "cuda"
    assert choose_device("auto") == torch.device(expected)


def test_cuda_without_an_assigned_gpu_is_refused() -> None:
    with pytest.raises(ConfigError, match="holds no GPU"):
        choose_device("cuda", gpu_assigned=False)


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it_is_refused_before_any_work() -> None:
    config = load_config(None, ["runtime.backend=inprocess", "runtime.device=cuda"])
    with pytest.raises(ConfigError, match="torch sees no CUDA device"):
        make_backend(config)


def test_in_process_backend_reports_its_device() -> None:
    backend = make_backend(load_config(None, ["runtime.backend=inprocess", "runtime.device=cpu"]))
    assert backend.describe() == "in-process (no Ray), on cpu"
