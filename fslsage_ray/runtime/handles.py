"""How the coordinator and the client hosts reach a host: by verb name, through one small
interface, whether the host lives in this process or in a Ray actor (runtime/actors.py).

The round protocol (runtime/backend.py) and the client's channel (runtime/channel.py) are
written once against `Handle`; a backend only decides which handles it makes. A verb is a
public method of ClientHost or ServerHost, so a new one is written on the host and called
from the protocol, nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Parcel:
    """A value bound for another host (a server job, an AM for a client, evaluation
    models): between processes it stays in Ray's object store and only its reference passes
    through the coordinator. A host returns it boxed, at the top of its result, in a tuple
    or as a dict's values; the receiving host gets the value itself."""

    value: Any


@dataclass(frozen=True)
class Done:
    """The reply of a call that ran in this process: its result, already there."""

    value: Any


class Handle(Protocol):
    """A host (ClientHost or ServerHost) reached by verb name."""

    # The host is in this process: a call runs at once, and an upload may keep the
    # client's tensors where they are (on a GPU too) instead of going through the host's
    # memory as numpy.
    local: bool

    def call(self, verb: str, *args: Any) -> Any:
        """Start `host.verb(*args)` where the host lives; a reply to `get`."""

    def get(self, reply: Any) -> Any:
        """The result of a reply, waiting for it if needed (a host's error is raised here)."""

    def first_done(self, replies: Sequence[Any]) -> Any:
        """One of `replies` whose call has ended, waiting for the first if none has."""


class LocalHandle:
    """A host in this process: a call is a method call."""

    local = True

    def __init__(self, host: Any) -> None:
        self.host = host

    def call(self, verb: str, *args: Any) -> Done:
        return Done(getattr(self.host, verb)(*(opened(a) for a in args)))

    def get(self, reply: Done) -> Any:
        return reply.value

    def first_done(self, replies: Sequence[Done]) -> Done:
        return replies[0]


def opened(arg: Any) -> Any:
    """An argument as a host in this process takes it: replies and parcels unboxed (at the
    top, or as a dict's values)."""
    if isinstance(arg, Done | Parcel):
        return opened(arg.value)
    if isinstance(arg, Mapping) and any(isinstance(v, Done | Parcel) for v in arg.values()):
        return {k: opened(v) for k, v in arg.items()}
    return arg


def parcels_for(parcels: Mapping[int, Any], cids: Sequence[int]) -> dict[int, Any]:
    """The parcels (or their references) of these clients, in this order."""
    return {cid: parcels[cid] for cid in cids if cid in parcels}
