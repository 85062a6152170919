"""generation.json read back without torch, for the summary table of `plot` and `compare`."""

from __future__ import annotations

import json
from pathlib import Path

GENERATION_FILE = "generation.json"


def read_generation_scores(run_dir: str | Path) -> dict[str, float] | None:
    """BLEU (and ROUGE-L, NIST where computed) from a run folder's generation.json; None
    when the run was never decoded (or the file is unreadable)."""
    path = Path(run_dir) / GENERATION_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("bleu"), (int, float)):
        return None
    return {
        key: float(data[key])
        for key in ("bleu", "rouge_l", "nist")
        if isinstance(data.get(key), (int, float))
    }
