"""Time to 40% and 45% for the reduced CIFAR-10 comparison under the three profiles.

    PYTHONPATH=. python docs/results/c10-simtime/make_table.py

Simulated seconds come from replaying each method's messages (fslsage_ray.system.replay;
training does not depend on the profile). The round at which a method first reaches the
target comes from its kept metrics (FSL-SAGE and CSE-FSL in docs/results/c10-authors, the
other four in docs/results/c10-simtime); the GiB to target is the plan's, checked against
the bytes the run's ledger booked.
"""

from __future__ import annotations

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
KEPT = {"fsl_sage": "c10-authors", "cse_fsl": "c10-authors"}


def metrics(method: str) -> dict[str, list]:
    folder = KEPT.get(method, "c10-simtime")
    return pq.read_table(f"docs/results/{folder}/{method}/metrics.parquet").to_pydict()


def first_round(acc: list[float], target: float) -> int | None:
    return next((i for i, a in enumerate(acc) if a >= target), None)


def main() -> None:
    flops = config_flops(load_config(CONFIG, BASE))
    rows = []
    for method, label in LABELS.items():
        config = load_config(CONFIG, [*BASE, f"algorithm.name={method}"])
        sizes = planned_sizes(config)
        gib = [r["gib_cum"] for r in plan_rounds(config, *sizes, 20)["rounds"]]
        kept = metrics(method)
        booked = kept["comm_gib_cum"]
        assert all(abs(a - b) < 1e-9 for a, b in zip(gib, booked, strict=False)), method
        at = [first_round(kept["test_acc"], target) for target in TARGETS]
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
