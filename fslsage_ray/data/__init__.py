"""Data layer: loading, validation, subsetting, client partitioning and batch transforms."""

from fslsage_ray.data.cifar import load_cifar
from fslsage_ray.data.dataset import DataBundle, DataError, ImageData
from fslsage_ray.data.digits import load_digits_data
from fslsage_ray.data.parquet_images import classes_from_metadata, load_parquet_images
from fslsage_ray.data.partition import (
    class_histogram,
    client_sizes,
    partition_dirichlet,
    partition_iid,
    partition_shards,
)
from fslsage_ray.data.subset import take_subset
from fslsage_ray.data.transforms import make_batch, normalize, random_crop_flip, to_tensor_batch

__all__ = [
    "DataBundle",
    "DataError",
    "ImageData",
    "class_histogram",
    "classes_from_metadata",
    "client_sizes",
    "load_cifar",
    "load_digits_data",
    "load_parquet_images",
    "make_batch",
    "normalize",
    "partition_dirichlet",
    "partition_iid",
    "partition_shards",
    "random_crop_flip",
    "take_subset",
    "to_tensor_batch",
]
