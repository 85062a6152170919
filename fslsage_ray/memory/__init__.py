"""Memory planned from sizes before a run, per actor kind (see estimate.py)."""

from fslsage_ray.memory.estimate import plan_memory
from fslsage_ray.memory.parts import ActorMemory, MemoryPlan, Part

__all__ = ["ActorMemory", "MemoryPlan", "Part", "plan_memory"]
