"""A host's virtual clients: a StateStore of clients (idle ones spilled above a budget)."""

from __future__ import annotations

from fslsage_ray.algorithms.base import Client
from fslsage_ray.algorithms.state_store import StateStore

ClientStore = StateStore[Client]

__all__ = ["ClientStore"]
