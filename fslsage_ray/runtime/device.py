"""Which torch device a process computes on, from `runtime.device` and what it was given."""

from __future__ import annotations

import torch

from fslsage_ray.config.schema import ConfigError


def choose_device(setting: str, gpu_assigned: bool = True) -> torch.device:
    """`setting` is runtime.device; `gpu_assigned` is False in a Ray actor that holds no GPU.

    "auto" takes CUDA only where it is both visible and assigned, so a CPU-only actor on a GPU
    node never competes for a GPU it did not reserve. "cuda" is a promise the user wants kept:
    breaking it is an error, not a silent fall back to a CPU that is 50x slower.
    """
    if setting == "cpu":
        return torch.device("cpu")
    usable = gpu_assigned and torch.cuda.is_available()
    if setting == "cuda" and not usable:
        where = "this process holds no GPU" if not gpu_assigned else "torch sees no CUDA device"
        raise ConfigError(f"runtime.device=cuda, but {where}")
    return torch.device("cuda" if usable else "cpu")
