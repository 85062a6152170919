"""Split models (client part, server part, auxiliary-model factory) and their size accounting.

Names are imported on first use (PEP 562), so `models.errors` costs no torch import.
"""

from __future__ import annotations

from fslsage_ray.lazy import lazy_exports

_EXPORTS = {
    "ModelError": "errors",
    "SplitModel": "split",
    "build_split_model": "registry",
    "count_parameters": "sizes",
    "list_aux": "registry",
    "list_models": "registry",
    "state_nbytes": "sizes",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
