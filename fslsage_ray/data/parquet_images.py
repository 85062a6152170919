"""Read a parquet file of encoded images (JPEG/PNG bytes) into one compact uint8 array.

Labels are read first (cheap), so a caller's subset can be chosen from them and only the
chosen images decoded; decoded images are cached on disk, keyed by the file's SHA-256.

Decoding is serial on purpose: CIFAR-sized images decode in ~40 us each and a thread pool
measured slower (Python overhead dominates, little time is spent outside the GIL).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import PIL
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from fslsage_ray.data.cache import cached_arrays, decoded_dir, load_entry
from fslsage_ray.data.dataset import DataError, ImageData, check_label_range
from fslsage_ray.data.file_hash import file_sha256

# Trying these first skips Pillow's probe of every registered format (~15% faster).
_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM")
_GRAY_MODES = {"L", "LA", "1"}
_UNSUPPORTED_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
DECODE_FORMAT = 1  # bump when decoding changes, so cached arrays from before are not reused


def _open_parquet(path: Path) -> pq.ParquetFile:
    if not path.is_file():
        raise DataError(f"parquet file not found: {path}")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"cannot read parquet file {path}: {err}") from err


def classes_from_metadata(path: str | Path) -> list[str] | None:
    """Class names from the schema metadata key ``classes`` (comma-separated), if present."""
    meta = _open_parquet(Path(path)).schema_arrow.metadata or {}
    raw = meta.get(b"classes")
    if raw is None:
        return None
    names = [name.strip() for name in raw.decode("utf-8").split(",")]
    return [name for name in names if name] or None


def _image_bytes(column: pa.ChunkedArray, name: str, path: Path) -> list[bytes | None]:
    """Encoded bytes per row; also accepts Hugging Face's ``{bytes, path}`` struct column."""
    kind = column.type
    if pa.types.is_struct(kind):
        if kind.get_field_index("bytes") < 0:
            raise DataError(f"{path}: struct column '{name}' has no 'bytes' field")
        column = pa.chunked_array(
            [chunk.field("bytes") for chunk in column.chunks], type=kind.field("bytes").type
        )
        kind = column.type
    if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
        raise DataError(f"{path}: column '{name}' must hold encoded image bytes, got {kind}")
    return column.to_pylist()


def _decode(data: bytes | None, row: int) -> np.ndarray:
    """One image as uint8 (H, W, C) with C in {1, 3}."""
    if data is None:
        raise DataError(f"row {row}: image is missing (null)")
    try:
        image = Image.open(io.BytesIO(data), formats=_FORMATS)
        image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"row {row}: cannot decode image: {err}") from err
    if image.mode in _UNSUPPORTED_MODES:
        raise DataError(f"row {row}: image mode {image.mode} is not 8-bit; not supported")
    if image.mode in _GRAY_MODES and image.mode != "L":
        image = image.convert("L")
    elif image.mode not in _GRAY_MODES and image.mode != "RGB":
        image = image.convert("RGB")
    array = np.asarray(image)
    return array[..., np.newaxis] if array.ndim == 2 else array


def decode_images(
    encoded: Sequence[bytes | None],
    expected_hw: tuple[int, int] | None = None,
    row_ids: Sequence[int] | None = None,
) -> np.ndarray:
    """Decode every image into one preallocated uint8 NHWC array.

    Grayscale stays 1-channel unless the set mixes in colour images, in which case all
    become RGB, so a stray grayscale JPEG in a colour set does not break loading.
    row_ids: the file's row number of each image, for error messages (default 0, 1, ...).
    """
    if len(encoded) == 0:
        raise DataError("no images to decode")
    ids = range(len(encoded)) if row_ids is None else row_ids
    first = _decode(encoded[0], ids[0])
    height, width, channels = first.shape
    if expected_hw is not None and (height, width) != tuple(expected_hw):
        raise DataError(
            f"images are {height}x{width} but {expected_hw[0]}x{expected_hw[1]} was expected"
        )
    out = np.empty((len(encoded), height, width, channels), dtype=np.uint8)
    out[0] = first
    for row in range(1, len(encoded)):
        array = _decode(encoded[row], ids[row])
        if array.shape[:2] != (height, width):
            raise DataError(
                f"row {ids[row]}: image is {array.shape[0]}x{array.shape[1]} but earlier images "
                f"are {height}x{width}; all images must have the same size"
            )
        if array.shape[2] != out.shape[3]:
            if array.shape[2] == 1:
                array = np.repeat(array, 3, axis=2)
            else:  # first colour image after grayscale ones: promote what we have so far
                out = np.repeat(out, 3, axis=3)
        out[row] = array
    return out


def _labels(column: pa.ChunkedArray, name: str, path: Path) -> np.ndarray:
    if not pa.types.is_integer(column.type):
        raise DataError(f"{path}: label column '{name}' must be integers, got {column.type}")
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{path}: label is missing (null) at row {row}")
    return column.to_numpy().astype(np.int64)


def _digest(rows: np.ndarray | None) -> str:
    if rows is None:
        return "all"
    return hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()


def _needs_colour(column: pa.ChunkedArray, name: str, path: Path, rows: np.ndarray) -> bool:
    """Whether a row outside `rows` is a colour image (read from headers, nothing decoded):
    decoding every row would then have turned the chosen grayscale images into RGB."""
    others = np.ones(len(column), dtype=bool)
    others[rows] = False
    for data in _image_bytes(column.take(pa.array(np.flatnonzero(others))), name, path):
        try:
            mode = Image.open(io.BytesIO(data), formats=_FORMATS).mode
        except (OSError, ValueError, SyntaxError, TypeError, Image.DecompressionBombError):
            continue  # an unreadable image the run never uses does not stop it
        if mode not in _GRAY_MODES and mode not in _UNSUPPORTED_MODES:
            return True
    return False


def _decode_rows(
    column: pa.ChunkedArray,
    name: str,
    path: Path,
    rows: np.ndarray | None,
    expected_hw: tuple[int, int] | None,
) -> np.ndarray:
    """Decode `rows` (all when None) exactly as decoding every row and then taking them."""
    chosen = column if rows is None else column.take(pa.array(rows))
    try:
        images = decode_images(
            _image_bytes(chosen, name, path), expected_hw, None if rows is None else rows.tolist()
        )
    except DataError as err:
        raise DataError(f"{path}: {err}") from err
    if rows is not None and images.shape[3] == 1 and _needs_colour(column, name, path, rows):
        images = np.repeat(images, 3, axis=3)
    return images


def _cached_images(
    path: Path,
    parquet: pq.ParquetFile,
    image_column: str,
    rows: np.ndarray | None,
    expected_hw: tuple[int, int] | None,
) -> np.ndarray:
    """The decoded rows from the on-disk cache; on a miss, only those rows are decoded
    (a cached decode of the whole file serves any subset)."""

    def decode() -> dict[str, np.ndarray]:
        try:
            column = parquet.read(columns=[image_column]).column(image_column)
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"cannot read parquet file {path}: {err}") from err
        return {"images": _decode_rows(column, image_column, path, rows, expected_hw)}

    if decoded_dir() is None:
        return decode()["images"]
    key = {
        "what": "parquet images",
        "format": DECODE_FORMAT,
        "pillow": PIL.__version__,
        "source_sha256": file_sha256(path),
        "column": image_column,
    }
    if rows is not None:
        whole = load_entry(decoded_dir(), key | {"rows": "all"})
        if whole is not None:
            images = whole["images"][rows]
            images.flags.writeable = False
            return images
    return cached_arrays(key | {"rows": _digest(rows)}, decode)["images"]


def load_parquet_images(
    path: str | Path,
    image_column: str = "image",
    label_column: str = "label",
    num_classes: int | None = None,
    expected_hw: tuple[int, int] | None = None,
    select: Callable[[np.ndarray], np.ndarray | None] | None = None,
) -> ImageData:
    """Load and validate one split, failing with a DataError that says what is wrong.

    select: given every row's label, the sorted rows to keep (None keeps all); only those
    images are decoded. Decoded images are cached on disk (see data/cache.py).
    """
    path = Path(path)
    parquet = _open_parquet(path)
    present = parquet.schema_arrow.names
    missing = [c for c in (image_column, label_column) if c not in present]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; columns present: {present}")
    try:
        table = parquet.read(columns=[label_column])
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"cannot read parquet file {path}: {err}") from err
    if table.num_rows == 0:
        raise DataError(f"{path}: no rows")

    labels = _labels(table.column(label_column), label_column, path)
    if num_classes is not None:
        check_label_range(labels, num_classes, str(path))
    elif labels.min() < 0:
        row = int(np.argmax(labels < 0))
        raise DataError(f"{path}: negative label {int(labels[row])} at row {row}")
    rows = None if select is None else select(labels)
    images = _cached_images(path, parquet, image_column, rows, expected_hw)
    if expected_hw is not None and images.shape[1:3] != tuple(expected_hw):
        raise DataError(
            f"{path}: images are {images.shape[1]}x{images.shape[2]} but "
            f"{expected_hw[0]}x{expected_hw[1]} was expected"
        )
    return ImageData(images=images, labels=labels if rows is None else labels[rows])
