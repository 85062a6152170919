"""The run folder: resolved config, metrics table, log. Created before any training."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from fslsage_ray.config import Config, ConfigError, dump_config
from fslsage_ray.outputs.storage import Where, has_files, join

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.parquet"
LOG_FILE = "run.log"
BEST_FILE = "checkpoint_best.pt"  # the best round's models (outputs/best_checkpoint.py)


def default_run_dir(config: Config) -> Where:
    """run.out_dir/<name>-<timestamp>; run.out_dir may be a URI (s3://bucket/runs)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return join(config.run.out_dir, f"{config.run.name}-{stamp}")


def check_run_dir(path: Where, overwrite: bool) -> None:
    """Refuse to mix a new run into an earlier one's folder (checked before any work)."""
    if has_files(path) and not overwrite:
        raise ConfigError(
            f"output folder {path} is not empty; pass --overwrite to replace it "
            "or choose another --out"
        )


def prepare_run_dir(path: Path, config: Config, overwrite: bool = False) -> Path:
    """Create the folder and save the resolved config."""
    path = Path(path)
    check_run_dir(path, overwrite)
    if path.exists() and overwrite:
        for name in (CONFIG_FILE, METRICS_FILE, LOG_FILE, BEST_FILE):
            (path / name).unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_FILE).write_text(dump_config(config))
    return path


def attach_log(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("fslsage_ray")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler


def detach_log(handler: logging.Handler) -> None:
    logging.getLogger("fslsage_ray").removeHandler(handler)
    handler.close()
