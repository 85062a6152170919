"""The refactoring safety net: every learning column of 13 small runs, dumped and compared.

    python tests/golden/safety_net.py dump  OUT.json     # on the code before a change
    python tests/golden/safety_net.py check OUT.json     # after: bit-identical, or a diff

Why a script and not a test: the golden test (test_golden.py) allows for the last bits that
differ between CPUs; this one does not, so it compares runs made on one machine, before and
after a refactor. Timing columns (wall time and its kin) are left out; everything else,
bytes, uploads, simulated time and AM errors included, must be equal (NaN equals NaN).
A column the code before did not write (a new figure) is listed, not counted.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from fslsage_ray.config import load_config  # noqa: E402
from fslsage_ray.outputs.metrics import TIMING_COLUMNS  # noqa: E402
from fslsage_ray.simulation import Simulation  # noqa: E402

E2E = Path(__file__).resolve().parents[3] / "shared" / "data" / "e2e"

DIGITS = [
    "run.rounds=3",
    "run.checkpoint_every=0",
    "algorithm.num_clients=4",
    "algorithm.batch_size=32",
    "algorithm.upload_every=2",
    "alignment.every=2",
    "alignment.epochs=5",
    "data.train_subset=400",
    "data.test_subset=200",
    "runtime.actor_num_cpus=0.5",
    "runtime.server_num_cpus=0.5",
]
INPROC = ["runtime.backend=inprocess"]
TINY_GPT2 = [
    "data.name=e2e",
    f"data.data_dir={E2E}",
    "data.seq_len=64",
    "data.vocab_size=1024",
    "data.train_subset=300",
    "data.test_subset=60",
    "model.name=gpt2",
    "model.gpt2.n_layer=2",
    "model.gpt2.n_embd=32",
    "model.gpt2.n_head=2",
    "model.gpt2.n_positions=64",
    "model.gpt2.aux_blocks=1",
    "model.gpt2.lora_rank=0",
    "optim.name=adamw",
    "optim.lr=0.005",
    "optim.weight_decay=0.01",
    "optim.schedule=linear",
    "optim.warmup_steps=5",
    "optim.label_smoothing=0.1",
    "algorithm.num_clients=3",
    "algorithm.batch_size=10",
    "algorithm.upload_every=2",
    "alignment.every=2",
    "alignment.epochs=3",
    "alignment.batch_size=20",
    "alignment.buffer_size=40",
    "run.rounds=3",
    "run.eval_batch_size=30",
    "run.checkpoint_every=0",
    "runtime.backend=inprocess",
]

METHODS = ["fsl_sage", "fsl_sage_lazy", "cse_fsl", "fsl_an", "sflv1", "sflv2", "fedavg"]
RUNS: dict[str, list[str]] = {
    **{f"{m}-inprocess": [*DIGITS, *INPROC, f"algorithm.name={m}"] for m in METHODS},
    "fsl_sage-dirichlet-partial": [
        *DIGITS,
        *INPROC,
        "algorithm.num_clients=6",
        "data.partition=dirichlet",
        "data.alpha=0.5",
        "algorithm.clients_per_round=3",
    ],
    "fsl_sage-simtime": [*DIGITS, *INPROC, "system.profile=mobile", "system.availability=0.8"],
    "fsl_sage-ray2-align-clients": [*DIGITS, "runtime.num_actors=2", "runtime.align_on=clients"],
    "fsl_sage-ray2-align-server": [*DIGITS, "runtime.num_actors=2", "runtime.align_on=server"],
    "sflv1-ray3": [*DIGITS, "runtime.num_actors=3", "algorithm.name=sflv1"],
    "gpt2-fsl_sage": [*TINY_GPT2, "algorithm.name=fsl_sage"],
    "gpt2-sflv2": [*TINY_GPT2, "algorithm.name=sflv2"],
}


def learning(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]


def dump(out: Path, only: list[str]) -> None:
    table = json.loads(out.read_text()) if out.exists() else {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, overrides in RUNS.items():
            if only and name not in only:
                continue
            if name.startswith("gpt2") and not E2E.is_dir():
                print(f"skip {name}: {E2E} is absent", flush=True)
                continue
            config = load_config(None, overrides)
            rows = Simulation(config, run_dir=Path(scratch) / name, progress=False).run()
            table[name] = learning(rows.to_pylist())
            print(f"{name}: {len(table[name])} rounds", flush=True)
            out.write_text(json.dumps(table, indent=1, sort_keys=True, default=str))


def same(x, y) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return x == y


def check(want_file: Path, only: list[str]) -> int:
    want = json.loads(want_file.read_text())
    got_file = Path(tempfile.mkdtemp()) / "after.json"
    dump(got_file, [n for n in (only or list(want)) if n in want])
    got = json.loads(got_file.read_text())
    bad = 0
    for name in got:
        a, b = want[name], got[name]
        if len(a) != len(b):
            print(f"DIFF {name}: {len(a)} rounds before, {len(b)} after")
            bad += 1
            continue
        added = sorted(set(b[0]) - set(a[0])) if a and b else []
        if added:  # a new figure is no change to what the runs learned; listed, not counted
            print(f"new columns in {name}: {', '.join(added)}")
        for ra, rb in zip(a, b, strict=True):
            for key in sorted(set(ra) | (set(rb) - set(added))):
                if not same(ra.get(key, "<absent>"), rb.get(key, "<absent>")):
                    print(
                        f"DIFF {name} round {ra['round']} {key}: {ra.get(key)!r} -> {rb.get(key)!r}"
                    )
                    bad += 1
    print(f"{len(got)} runs compared, {bad} differences")
    return 1 if bad else 0


if __name__ == "__main__":
    verb, path, *names = sys.argv[1:]
    if verb == "dump":
        dump(Path(path), names)
    else:
        sys.exit(check(Path(path), names))
