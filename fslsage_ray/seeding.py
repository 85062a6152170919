"""Seeds derived from (run seed, purpose, client id), so no result depends on process layout."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator

import numpy as np
import torch


def derive_seed(seed: int, *tags: str | int) -> int:
    """A stable 63-bit seed for one purpose; the same on every machine and process."""
    words = [seed & 0xFFFFFFFF]
    for tag in tags:
        words.append(zlib.crc32(tag.encode()) if isinstance(tag, str) else int(tag) & 0xFFFFFFFF)
    return int(np.random.SeedSequence(words).generate_state(2, np.uint64)[0] >> np.uint64(1))


def generator(seed: int, *tags: str | int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(derive_seed(seed, *tags))
    return gen


def seed_global(seed: int, device: torch.device | None = None) -> None:
    """Seed torch's global RNG on the CPU, and on the GPU when `device` is one. Not
    torch.manual_seed: on a machine without a GPU it queues a CUDA seeding with a captured
    stack trace on every call (0.3-0.6 ms at the depth of a round; thousands of calls at
    10,000 clients), and it would seed GPUs a CPU run never uses."""
    torch.default_generator.manual_seed(seed)
    if device is not None and device.type == "cuda":
        torch.cuda.manual_seed_all(seed)


@contextlib.contextmanager
def seeded_init(seed: int, *tags: str | int) -> Iterator[None]:
    """Build modules (on the CPU) from a derived seed without disturbing the global RNG."""
    with torch.random.fork_rng(devices=[]):
        seed_global(derive_seed(seed, *tags))
        yield
