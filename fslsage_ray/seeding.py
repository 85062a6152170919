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


@contextlib.contextmanager
def seeded_init(seed: int, *tags: str | int) -> Iterator[None]:
    """Build modules from a derived seed without disturbing the global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, *tags))
        yield
