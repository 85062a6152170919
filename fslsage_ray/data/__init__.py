"""Data layer: loading, validation, subsetting and client partitioning, as numpy arrays.

Names are imported on first use (PEP 562), so a light submodule such as `dataset` or
`file_hash` can be imported without the others. Batch transforms (torch) belong to the
image task: `fslsage_ray.tasks.image_transforms`.
"""

from __future__ import annotations

from fslsage_ray.lazy import lazy_exports

_EXPORTS = {
    "DataBundle": "dataset",
    "DataError": "dataset",
    "ImageData": "dataset",
    "class_histogram": "partition",
    "classes_from_metadata": "parquet_images",
    "client_sizes": "partition",
    "load_cifar": "cifar",
    "load_digits_data": "digits",
    "load_parquet_images": "parquet_images",
    "partition_dirichlet": "partition",
    "partition_iid": "partition",
    "partition_shards": "partition",
    "take_subset": "subset",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
