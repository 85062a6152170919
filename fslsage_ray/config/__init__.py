"""Typed, frozen experiment configuration loaded from YAML with command-line overrides."""

from fslsage_ray.config.load import (
    config_from_dict,
    config_to_dict,
    dump_config,
    flatten,
    load_config,
    parse_overrides,
    quickstart_path,
)
from fslsage_ray.config.schema import (
    AlgorithmConfig,
    Config,
    ConfigError,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    RuntimeConfig,
)

__all__ = [
    "AlgorithmConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "RuntimeConfig",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "flatten",
    "load_config",
    "parse_overrides",
    "quickstart_path",
]
