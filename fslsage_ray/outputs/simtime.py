"""`fslsage-ray simtime`: finished runs replayed under a system profile, written as run
folders (config with the profile, metrics with the sim_* columns) that `plot` and the
summary read like any other."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fslsage_ray.config import dump_config, load_config
from fslsage_ray.outputs.run_dir import CONFIG_FILE, METRICS_FILE
from fslsage_ray.system.flops import StepFlops
from fslsage_ray.system.replay import config_flops, replay_rounds


def replay_run(
    run_dir: Path, out_dir: Path, overrides: Sequence[str], cache: dict[str, StepFlops]
) -> Path:
    """out_dir/<run folder name> with the replayed times; FLOPs counted once per model."""
    config = load_config(run_dir / CONFIG_FILE, overrides)
    table = pq.read_table(run_dir / METRICS_FILE)
    rows = table.to_pylist()
    key = dump_config(config).split("algorithm:")[0]  # data and model sections
    if key not in cache:
        cache[key] = config_flops(config)
    sim = replay_rounds(config, len(rows), cache[key])
    merged = [
        {**row, **{k: v for k, v in s.items() if k != "round"}}
        for row, s in zip(rows, sim, strict=True)
    ]
    target = out_dir / run_dir.name
    target.mkdir(parents=True, exist_ok=True)
    (target / CONFIG_FILE).write_text(dump_config(config))
    out = pa.Table.from_pylist(merged).replace_schema_metadata(table.schema.metadata)
    pq.write_table(out, target / METRICS_FILE)
    return target
