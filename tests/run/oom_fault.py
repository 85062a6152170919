"""A test plugin (config `plugins`): a real torch.OutOfMemoryError raised inside real actors.

Imported by every actor process (actors load the config's plugins), it wraps a client
host's local steps and the server host's upload handling so that they raise when a switch
says so. The switch is a named Ray actor the test creates and arms from the driver, so a
fault crosses process boundaries and survives the actors' restarts: "fail twice" means two
failures whichever fresh actors hit them. Outside an actor (the driver) nothing is wrapped.
"""

from __future__ import annotations

import functools

import ray
import torch

from fslsage_ray.runtime.client_host import ClientHost
from fslsage_ray.runtime.server_host import ServerHost

SWITCH = "fslsage-test-oom-switch"


@ray.remote(num_cpus=0)
class FaultSwitch:
    """How many more of the armed role's actors fail, and how many failed so far."""

    def __init__(self) -> None:
        self.role: str | None = None
        self.left = 0
        self.fired = 0
        self.failed: set[str] = set()  # actors that failed already

    def arm(self, role: str, times: int) -> None:
        self.role, self.left = role, times

    def fire(self, role: str, actor: str) -> bool:
        """Once per actor: calls already on their way to a failed actor (the async server
        takes several) must not use up the failures meant for its replacement."""
        if role != self.role or self.left == 0 or actor in self.failed:
            return False
        self.left -= 1
        self.fired += 1
        self.failed.add(actor)
        return True

    def fired_count(self) -> int:
        return self.fired


def _fires(role: str) -> bool:
    try:
        switch = ray.get_actor(SWITCH)
    except ValueError:  # no switch: no fault
        return False
    return ray.get(switch.fire.remote(role, ray.get_runtime_context().get_actor_id()))


def _failing(method, role: str):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if _fires(role):
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 20.00 MiB (injected by the test)"
            )
        return method(self, *args, **kwargs)

    wrapper.injected = True
    return wrapper


def _in_an_actor() -> bool:
    return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None


if _in_an_actor() and not getattr(ClientHost.run_local, "injected", False):
    ClientHost.run_local = _failing(ClientHost.run_local, "client")
    ServerHost.take_uploads = _failing(ServerHost.take_uploads, "server")
