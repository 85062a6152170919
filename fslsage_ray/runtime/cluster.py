"""Starting or attaching to Ray, safely by default.

A private local Ray started here listens on 127.0.0.1 only, has no dashboard unless asked,
and sends no usage statistics. An existing cluster is used only when named (runtime.address
or RAY_ADDRESS), and then Ray's local-only switch is left alone.
"""

from __future__ import annotations

import logging
import os

from fslsage_ray.config.schema import RuntimeConfig


def _loopback_only() -> None:
    """Ray's local-only switch: every address becomes 127.0.0.1.

    Ray reads the variable once, at import, so setting it now is not enough for this
    process: the constant it was read into is switched off too. The variable itself is
    kept for the processes Ray starts.
    """
    import ray._private.ray_constants as ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def cluster_address(runtime: RuntimeConfig) -> str | None:
    return runtime.address or os.environ.get("RAY_ADDRESS") or None


def connect(runtime: RuntimeConfig) -> bool:
    """Make sure Ray is initialised; returns True when this call started a private Ray."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    if ray.is_initialized():
        return False
    address = cluster_address(runtime)
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        return False
    _loopback_only()
    ray.init(
        address="local",  # a private instance, even when `ray start` left one running here
        num_cpus=runtime.local_num_cpus if runtime.local_num_cpus else (os.cpu_count() or 1),
        num_gpus=runtime.local_num_gpus,
        include_dashboard=runtime.dashboard,
        dashboard_host="127.0.0.1",
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    return True


def cluster_resources() -> dict[str, float]:
    import ray

    return {k: float(v) for k, v in ray.cluster_resources().items()}
