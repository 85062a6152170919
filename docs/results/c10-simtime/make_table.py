"""Time to 40% and 45% for the reduced CIFAR-10 comparison under the three profiles.

    PYTHONPATH=. python docs/results/c10-simtime/make_table.py \
        docs/results/c10-simtime/fsl_an/metrics.parquet

Simulated seconds come from replaying each method's messages (fslsage_ray.system.replay;
training does not depend on the profile). The round at which a method first reaches the
target comes from its metrics where the run folder is kept (FSL-SAGE and CSE-FSL in
docs/results/c10-authors, FSL-AN from the path given), else from the GiB to target of
docs/results.md's table (SplitFed-MS, SplitFed-SS, FedAvg: their per-round bytes are
constant, so the GiB figure names the round).
"""

from __future__ import annotations

import sys

import pyarrow.parquet as pq

from fslsage_ray.config import load_config
from fslsage_ray.experiment import planned_sizes
from fslsage_ray.plan import plan_rounds
from fslsage_ray.system.replay import config_flops, replay_rounds

CONFIG = "configs/cifar10/compare_cpu_small.yaml"
BASE = ["data.data_dir=/work/shared/data"]
PROFILES = ("datacenter", "broadband", "mobile")
TARGETS = (0.40, 0.45)
LABELS = {
    "fsl_sage": "FSL-SAGE",
    "cse_fsl": "CSE-FSL",
    "fsl_an": "FSL-AN",
    "sflv1": "SplitFed-MS",
    "sflv2": "SplitFed-SS",
    "fedavg": "FedAvg",
}
DOC_GIB = {"sflv1": (1.019, 1.401), "sflv2": (0.637, 0.764), "fedavg": (6.671, 9.172)}
RUNS = {
    "fsl_sage": "docs/results/c10-authors/fsl_sage/metrics.parquet",
    "cse_fsl": "docs/results/c10-authors/cse_fsl/metrics.parquet",
}


def first_round(method: str, gib: list[float], k: int) -> int | None:
    if method in RUNS:
        acc = pq.read_table(RUNS[method]).column("test_acc").to_pylist()
        return next((i for i, a in enumerate(acc) if a >= TARGETS[k]), None)
    return next(i for i, g in enumerate(gib) if round(g, 3) == DOC_GIB[method][k])


def main() -> None:
    RUNS["fsl_an"] = sys.argv[1]
    flops = config_flops(load_config(CONFIG, BASE))
    rows = []
    for method, label in LABELS.items():
        config = load_config(CONFIG, [*BASE, f"algorithm.name={method}"])
        sizes = planned_sizes(config)
        gib = [r["gib_cum"] for r in plan_rounds(config, *sizes, 20)["rounds"]]
        at = [first_round(method, gib, k) for k in range(2)]
        cells = [label, *(f"{gib[r]:.3f} (round {r})" if r is not None else "-" for r in at)]
        for profile in PROFILES:
            system = f"system.profile={profile}"
            c = load_config(CONFIG, [*BASE, f"algorithm.name={method}", system])
            sim = replay_rounds(c, 20, flops)
            per_round = sim[1]["sim_round_s"]
            times = [f"{sim[r]['sim_time_s']:.2f}" if r is not None else "-" for r in at]
            cells.append(f"{' / '.join(times)} ({per_round:.2f})")
        rows.append(cells)
    head = ["method", "GiB to 40%", "GiB to 45%"]
    head += [f"{p}: s to 40% / 45% (s per round)" for p in PROFILES]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
