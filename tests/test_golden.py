"""Golden metrics: a tiny deterministic run per algorithm, stored, compared every time.

An accidental change of semantics (ordering, normalisation, what is averaged or sent)
moves these numbers far more than the tolerances allow. Bytes must match exactly.
Regenerate deliberately with:  FSLSAGE_WRITE_GOLDEN=1 python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden" / "digits_3rounds.json"
METHODS = ["fsl_sage", "fsl_sage_lazy", "cse_fsl", "fsl_an", "sflv1", "sflv2", "fedavg"]
SETTINGS = [
    "runtime.backend=inprocess",
    "run.rounds=3",
    "run.checkpoint_every=0",
    "algorithm.num_clients=4",
    "algorithm.batch_size=32",
    "algorithm.upload_every=2",
    "alignment.every=2",
    "alignment.epochs=5",
    "data.train_subset=400",
    "data.test_subset=200",
]
KEYS = ["test_acc", "test_loss", "train_loss", "client_loss", "comm_bytes", "uploads"]


def _metrics(method: str, run_cache) -> list[dict]:
    """The golden keys of the method's run (tests/conftest.RunCache: once per session)."""
    rows = run_cache([*SETTINGS, f"algorithm.name={method}"])
    return [{k: r[k] for k in KEYS} for r in rows]


@pytest.mark.parametrize("method", METHODS)
def test_metrics_match_the_golden_run(method, run_cache):
    got = _metrics(method, run_cache)
    if os.environ.get("FSLSAGE_WRITE_GOLDEN"):
        table = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        table[method] = got
        GOLDEN.write_text(json.dumps(table, indent=1, sort_keys=True))
        pytest.skip("golden metrics written")
    want = json.loads(GOLDEN.read_text())[method]
    for round_idx, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g["comm_bytes"] == w["comm_bytes"] and g["uploads"] == w["uploads"], round_idx
        # Float results may differ in the last bits across CPUs; semantics changes do not
        # stay within these bounds.
        assert g["test_acc"] == pytest.approx(w["test_acc"], abs=0.011), round_idx
        for key in ("test_loss", "train_loss", "client_loss"):
            assert g[key] == pytest.approx(w[key], rel=1e-3, nan_ok=True), (round_idx, key)
