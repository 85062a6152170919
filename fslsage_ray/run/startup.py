"""The driver's one-time work before the first round: data read and split, models built, the
backend made, devices drawn, and what would otherwise drift fixed into the config.

experiment.py holds the building blocks every process uses alike (a worker rebuilds its
models from a WorldSpec); this module is what only the driver does, once per run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np

from fslsage_ray.algorithms.base import Algorithm, ModelSizes, Parts
from fslsage_ray.algorithms.registry import get_algorithm
from fslsage_ray.config import Config
from fslsage_ray.experiment import (
    WorldSpec,
    build_template,
    initial_aux,
    load_data,
    model_sizes,
    partition,
)
from fslsage_ray.runtime.allocator import torch_threads
from fslsage_ray.runtime.backend import Backend
from fslsage_ray.system.flops import count_step_flops
from fslsage_ray.system.timing import SystemModel
from fslsage_ray.tasks.base import Arrays, TaskData

log = logging.getLogger("fslsage_ray")


def make_backend(config: Config) -> Backend:
    if config.runtime.backend == "inprocess":
        from fslsage_ray.runtime.device import choose_device
        from fslsage_ray.runtime.inprocess import InProcessBackend

        return InProcessBackend(choose_device(config.runtime.device))
    from fslsage_ray.runtime.ray_backend import RayBackend

    return RayBackend(config.runtime, uses_server=get_algorithm(config).uses_server)


@dataclass
class Prepared:
    """The driver's one-time work: data read and split, shapes known."""

    world: WorldSpec
    train: Arrays
    test: Arrays
    parts: list[np.ndarray]
    sizes: ModelSizes
    initial_parts: Parts
    files: tuple[str, ...] = ()  # data files read (their hashes go into provenance.json)
    load_s: float = 0.0  # seconds spent reading (and decoding) the data
    models_s: float = 0.0  # seconds spent building the models

    @property
    def client_sizes(self) -> list[int]:
        return [len(p) for p in self.parts]


def sizes_text(sizes: list[int], listed: int = 20) -> str:
    """Every client's sample count up to `listed` clients; beyond, a summary (a list of
    10,000 counts made a 30 kB log line)."""
    if len(sizes) <= listed:
        return str(sizes)
    ordered = sorted(sizes)
    median = ordered[len(ordered) // 2]
    return f"min {ordered[0]}, median {median}, max {ordered[-1]}, total {sum(sizes)}"


@dataclass
class DataRead:
    """The data read and split: everything a bad data folder or partition is refused at."""

    data: TaskData
    parts: list[np.ndarray]
    load_s: float  # seconds spent reading (and decoding)


def read_data(config: Config) -> DataRead:
    started = time.perf_counter()
    data = load_data(config)
    load_s = time.perf_counter() - started
    return DataRead(data, partition(config, data.train_keys), load_s)


def build_models(config: Config, read: DataRead) -> Prepared:
    """The model template, its sizes and the initial global parts."""
    started = time.perf_counter()
    world = WorldSpec(config, read.data.task)
    template = build_template(world)
    algorithm = get_algorithm(config)
    initial = algorithm.initial_parts(template, initial_aux(template, config.run.seed))
    return Prepared(
        world,
        read.data.train,
        read.data.test,
        read.parts,
        model_sizes(world, template),
        initial,
        read.data.files,
        read.load_s,
        time.perf_counter() - started,
    )


def prepare(config: Config) -> Prepared:
    return build_models(config, read_data(config))


def system_model(config: Config, algorithm: Algorithm, p: Prepared) -> SystemModel | None:
    """The run's devices and FLOPs per sample, when `system` is on."""
    if not config.system.enabled:
        return None
    if config.system.compute == "measured":
        log.warning(
            "system.compute=measured: simulated time follows this machine's busy "
            "time, so it is NOT reproducible (system.compute=flops is)"
        )
    template = build_template(p.world)
    flops = count_step_flops(template, p.world.task, p.train)
    return SystemModel.build(config, algorithm, flops, p.client_sizes)


def resolve_at_start(config: Config) -> Config:
    """Fix what would otherwise drift, so that config.yaml keeps it: a linear schedule's
    horizon (optim.decay_rounds = run.rounds; a resume with more rounds does not stretch it)
    and the thread count of every process (a later layout does not change the sums)."""
    optim, runtime = config.optim, config.runtime
    if optim.schedule == "linear" and optim.decay_rounds is None:
        config = replace(config, optim=replace(optim, decay_rounds=config.run.rounds))
    if runtime.torch_threads is None:
        config = replace(config, runtime=replace(runtime, torch_threads=torch_threads(runtime)))
    return config
