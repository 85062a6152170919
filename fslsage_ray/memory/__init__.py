"""Memory planned from sizes before a run, per actor kind (see estimate.py), and GPU shares
sized from it (fit.py, auto.py)."""

from fslsage_ray.memory.auto import plan_memory
from fslsage_ray.memory.parts import ActorMemory, MemoryPlan, Part

__all__ = ["ActorMemory", "MemoryPlan", "Part", "plan_memory"]
