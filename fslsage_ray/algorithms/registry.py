"""Algorithms by name (`algorithm.name` in a config)."""

from __future__ import annotations

from fslsage_ray.algorithms.base import Algorithm
from fslsage_ray.algorithms.cse_fsl import CseFsl
from fslsage_ray.algorithms.fedavg import FedAvg
from fslsage_ray.algorithms.fsl_an import FslAn
from fslsage_ray.algorithms.fsl_sage import FslSage, LazyFslSage
from fslsage_ray.algorithms.sflv1 import SplitFedMS
from fslsage_ray.algorithms.sflv2 import SplitFedSS
from fslsage_ray.config.schema import Config

ALGORITHMS: dict[str, type[Algorithm]] = {
    cls.name: cls for cls in (FslSage, LazyFslSage, FedAvg, SplitFedMS, SplitFedSS, CseFsl, FslAn)
}


def get_algorithm(config: Config) -> Algorithm:
    name = config.algorithm.name
    if name == "fsl_sage" and config.algorithm.lazy:
        name = "fsl_sage_lazy"
    return ALGORITHMS[name](config)


def algorithm_label(name: str, lazy: bool = False) -> str:
    if name == "fsl_sage" and lazy:
        name = "fsl_sage_lazy"
    cls = ALGORITHMS.get(name)
    return cls.label if cls else name
