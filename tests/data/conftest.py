"""Shared helpers for the data-layer tests: tiny parquet files built on the fly."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    """Encode a uint8 HxW or HxWx3 array as image file bytes."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def random_images(n: int, h: int = 4, w: int = 5, c: int = 3, seed: int = 0) -> np.ndarray:
    shape = (n, h, w, c) if c > 1 else (n, h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def imgs() -> SimpleNamespace:
    """Image helpers as a fixture, so tests never import conftest by module name."""
    return SimpleNamespace(encode=encode, random=random_images)


@pytest.fixture
def write_parquet(tmp_path: Path) -> Callable[..., Path]:
    """Write columns to ``tmp_path/name`` and return the path."""

    def _write(
        columns: dict[str, Sequence | pa.Array],
        name: str = "split.parquet",
        metadata: dict[str, str] | None = None,
    ) -> Path:
        table = pa.table(columns)
        if metadata:
            table = table.replace_schema_metadata(metadata)
        path = tmp_path / name
        pq.write_table(table, path)
        return path

    return _write


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real data folder, or skip when this checkout has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (expected at ../shared/data)")
    return SHARED_DATA
