"""Data layer: loading, validation, subsetting, client partitioning and batch transforms.

Names are imported on first use (PEP 562), so a torch-free submodule such as `dataset` or
`file_hash` can be imported without pulling torch in through `transforms`.
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
    "make_batch": "transforms",
    "normalize": "transforms",
    "partition_dirichlet": "partition",
    "partition_iid": "partition",
    "partition_shards": "partition",
    "random_crop_flip": "transforms",
    "take_subset": "subset",
    "to_tensor_batch": "transforms",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
