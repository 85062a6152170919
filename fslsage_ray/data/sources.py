"""The built-in data sources by name (`data.name`): each returns both splits and their task.

A source reads and validates; subsetting and partitioning are generic (experiment.py), but a
source of encoded images applies the subset first (data/subset.config_subset), to decode less.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np

from fslsage_ray.config.schema import Config, ConfigError, DataConfig
from fslsage_ray.data.cifar import Select, load_cifar, parquet_paths
from fslsage_ray.data.dataset import DataBundle
from fslsage_ray.data.digits import load_digits_data
from fslsage_ray.data.parquet_images import load_parquet_images
from fslsage_ray.data.subset import config_subset
from fslsage_ray.registry import DATA, entry
from fslsage_ray.tasks.base import TaskData
from fslsage_ray.tasks.classification import IMAGES, LABELS, ImageClassification, ImageSpec

log = logging.getLogger("fslsage_ray")


def image_task_data(bundle: DataBundle, data: DataConfig, files: tuple[str, ...] = ()) -> TaskData:
    """Decoded image splits as task data; `data.augment` overrides the data set's default."""
    _, height, width, channels = bundle.train.images.shape
    if height != width:
        raise ConfigError(f"images must be square, got {height}x{width}")
    augment = bundle.augment if data.augment is None else data.augment
    spec = ImageSpec(bundle.max_value, tuple(bundle.mean), tuple(bundle.std), augment)
    task = ImageClassification(spec, bundle.num_classes, int(channels), int(height))
    return TaskData(
        {IMAGES: bundle.train.images, LABELS: bundle.train.labels},
        {IMAGES: bundle.test.images, LABELS: bundle.test.labels},
        bundle.train.labels,
        bundle.test.labels,
        task,
        bundle.name,
        files,
    )


def load_digits_source(config: Config) -> TaskData:
    return image_task_data(load_digits_data(), config.data)


def _select(config: Config) -> Select:
    """The rows the run keeps of a split, for sources that decode only those."""

    def select(labels: np.ndarray, split: str) -> np.ndarray | None:
        return config_subset(labels, config, split)

    return select


def load_cifar_source(config: Config) -> TaskData:
    data = config.data
    bundle = load_cifar(data.name, data.data_dir, download=data.download, select=_select(config))
    files = ()
    if data.data_dir is not None:
        files = tuple(str(p) for p in parquet_paths(data.name, data.data_dir) if p.is_file())
    return image_task_data(bundle, data, files)


def cifar_train_size(config: Config) -> int | None:
    """CIFAR's training size when its parquet files are in place (nothing to download or
    check then); None: the study loads the data, which also refuses a bad data_dir."""
    data = config.data
    if data.data_dir is None:
        return None
    if not all(p.is_file() for p in parquet_paths(data.name, data.data_dir)):
        return None
    shape = entry(DATA, data.name).shape
    return shape.train_size if shape is not None else None


def load_parquet_source(config: Config) -> TaskData:
    data = config.data
    # All training images: the normalisation statistics are those of the whole file.
    train = load_parquet_images(data.train_path, num_classes=data.num_classes)
    test = load_parquet_images(
        data.test_path,
        num_classes=data.num_classes,
        expected_hw=train.images.shape[1:3],
        select=partial(_select(config), split="test"),
    )
    # Reductions accumulate in float64 without a float copy of the whole image array.
    mean = tuple(float(v) / 255.0 for v in train.images.mean(axis=(0, 1, 2), dtype=np.float64))
    std = tuple(float(v) / 255.0 for v in train.images.std(axis=(0, 1, 2), dtype=np.float64))
    bundle = DataBundle(train, test, data.num_classes, mean, std, False, 255.0, "parquet")
    return image_task_data(bundle, data, (str(data.train_path), str(data.test_path)))


def load_e2e_source(config: Config) -> TaskData:
    """E2E NLG from CSV/JSONL; keys are restaurant names (what a Dirichlet split follows)."""
    from fslsage_ray.data.e2e import TEST_FILE, TRAIN_FILE, e2e_texts, encode_e2e, read_e2e
    from fslsage_ray.data.tokenizer import load_tokenizer
    from fslsage_ray.tasks.language_model import (
        ATTENTION_MASK,
        INPUT_IDS,
        LABELS,
        LanguageModelling,
    )

    data = config.data
    if data.data_dir is None and (data.train_path is None or data.test_path is None):
        raise ConfigError("data.name=e2e needs data.data_dir or data.train_path and test_path")
    folder = Path(data.data_dir) if data.data_dir is not None else None
    train_path = Path(data.train_path) if data.train_path else folder / TRAIN_FILE
    test_path = Path(data.test_path) if data.test_path else folder / TEST_FILE
    train_rows, test_rows = read_e2e(train_path), read_e2e(test_path)
    fmt = data.prompt_format
    texts = e2e_texts(train_rows, fmt)
    tokenizer = load_tokenizer(texts, data.tokenizer_path, None, data.vocab_size)
    log.info("tokenizer: %s (%d tokens)", tokenizer.source, tokenizer.vocab_size)
    train = encode_e2e(train_rows, tokenizer, data.seq_len, str(train_path), fmt)
    test = encode_e2e(test_rows, tokenizer, data.seq_len, str(test_path), fmt)

    def arrays(split) -> dict[str, np.ndarray]:
        return {
            INPUT_IDS: split.input_ids,
            ATTENTION_MASK: split.attention_mask.astype(bool),
            LABELS: split.labels,
        }

    task = LanguageModelling(
        data.seq_len,
        tokenizer.vocab_size,
        config.optim.label_smoothing,
        tokenizer.tokenizer.to_str(),
    )
    files = (str(train_path), str(test_path))
    return TaskData(arrays(train), arrays(test), train.groups, test.groups, task, "e2e", files)
