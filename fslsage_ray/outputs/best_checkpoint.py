"""checkpoint_best.pt: the models of the round with the best headline so far, for
`fslsage-ray generate RUN_DIR --checkpoint best` (and anyone who wants the best model, not
the last).

It holds only what evaluation uses: the round's evaluated global part (client, or the whole
model for FedAvg) as a transfer sends it, and the server's evaluation head without its frozen
weights (`own_state`: the frozen base is the run's template, rebuilt from its seed or
pretrained weights). No optimiser, no AMs, no client state: it cannot continue a run, and it
need not, since checkpoint.pt does that. With LoRA it is the adapters and the head's small
own tensors (GPT-2 medium: a few MB); without LoRA it is about the size of the trainable
model, which is why it is on by default only where `generate` needs it (language models;
run.keep_best). Written atomically and read with weights_only=True, like checkpoint.pt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fslsage_ray.config import ConfigError
from fslsage_ray.outputs.checkpoint import save_atomically
from fslsage_ray.outputs.run_dir import BEST_FILE

BEST_FORMAT = 1


def save_best(run_dir: Path, payload: dict[str, Any]) -> Path:
    """Atomically: a crash mid-write keeps the previous best."""
    return save_atomically(Path(run_dir) / BEST_FILE, {"best_format": BEST_FORMAT, **payload})


def load_best(run_dir: Path) -> dict[str, Any]:
    """The best models' payload; ConfigError (one line) when the folder has none."""
    path = Path(run_dir) / BEST_FILE
    if not path.is_file():
        raise ConfigError(
            f"no {BEST_FILE} in {run_dir}: the run kept no best models (run.keep_best is off "
            "for image tasks by default, and runs made before it existed have none); use "
            "--checkpoint last"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged files
        raise ConfigError(f"{path} cannot be read: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("best_format") != BEST_FORMAT:
        raise ConfigError(f"{path} is not a fslsage-ray best checkpoint (format {BEST_FORMAT})")
    return payload


def best_round(run_dir: Path) -> int | None:
    """The round the folder's best models come from (None: no readable best file)."""
    try:
        return int(load_best(run_dir)["round"])
    except ConfigError:
        return None


def drop_best(run_dir: Path) -> None:
    (Path(run_dir) / BEST_FILE).unlink(missing_ok=True)
