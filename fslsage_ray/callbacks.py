"""The public home of run callbacks: `from fslsage_ray.callbacks import RunCallback`.

The interface lives in outputs/callbacks.py, beside the built-in callbacks (progress bar,
trackers, provenance) that implement it; this module only names it for users.
"""

from fslsage_ray.outputs.callbacks import (
    CallbackList,
    Row,
    RunCallback,
    RunInfo,
    load_callback,
    load_callbacks,
)

__all__ = ["CallbackList", "Row", "RunCallback", "RunInfo", "load_callback", "load_callbacks"]
