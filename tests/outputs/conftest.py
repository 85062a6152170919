"""Synthetic run folders written the way the simulator writes them, without training."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

GIB = 1024**3


def write_run(
    folder: Path,
    method: str,
    accs: Sequence[float],
    gib_per_round: float,
    *,
    partition: str = "iid",
    alpha: float = 1.0,
    dataset: str = "cifar10",
    lazy: bool = False,
    align_every: int = 0,
    seed: int = 0,
    num_clients: int = 10,
    runtime: dict | None = None,
) -> Path:
    """A run folder with one metrics row per accuracy; traffic grows by gib_per_round."""
    folder.mkdir(parents=True)
    config = {
        "data": {"name": dataset, "partition": partition, "alpha": alpha},
        "model": {"name": "resnet18"},
        "optim": {"lr": 0.001},
        "algorithm": {"name": method, "num_clients": num_clients},
        "alignment": {"lazy": lazy},
        "runtime": runtime or {"backend": "inprocess"},
        "run": {"name": folder.name, "rounds": len(accs), "seed": seed},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    rows = []
    for rnd, acc in enumerate(accs):
        aligned = align_every > 0 and rnd % align_every == 0
        per_round = int(gib_per_round * GIB)
        rows.append(
            {
                "round": rnd,
                "test_acc": acc,
                "test_loss": 2.5 - 2.0 * acc,
                "train_loss": 2.4 - 2.0 * acc,
                "aligned": aligned,
                "am_rel_error_before": 1.0 / (rnd + 1) if aligned else math.nan,
                "am_rel_error_after": 0.2 / (rnd + 1) if aligned else math.nan,
                "comm_bytes": per_round,
                "comm_bytes_cum": per_round * (rnd + 1),
                "comm_gib_cum": per_round * (rnd + 1) / GIB,
                "bytes_client_model_up": per_round,
            }
        )
    pq.write_table(pa.Table.from_pylist(rows), folder / "metrics.parquet")
    return folder


def write_lm_run(
    folder: Path,
    method: str,
    losses: Sequence[float],
    gib_per_round: float,
    *,
    partition: str = "iid",
    alpha: float = 1.0,
    align_every: int = 0,
    seed: int = 0,
    num_clients: int = 10,
) -> Path:
    """A language-model run folder (headline test loss, no test_acc column), written through
    the simulator's own MetricsTable; one row per loss, traffic grows by gib_per_round.
    """
    from fslsage_ray.outputs.metrics import MetricsTable  # imports torch (the ledger)

    folder.mkdir(parents=True)
    config = {
        "data": {"name": "e2e", "partition": partition, "alpha": alpha},
        "model": {"name": "gpt2"},
        "algorithm": {"name": method, "num_clients": 4},
        "run": {"name": folder.name, "rounds": len(losses), "seed": 0},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    table = MetricsTable(headline="test_loss", goal="min")
    for rnd, loss in enumerate(losses):
        aligned = align_every > 0 and rnd % align_every == 0
        row = {
            "round": rnd,
            "algorithm": method,
            "test_loss": loss,
            "test_ppl": math.exp(loss),
            "train_loss": loss + 0.1,
            "aligned": aligned,
            "am_rel_error_before": 1.0 / (rnd + 1) if aligned else math.nan,
            "am_rel_error_after": 0.2 / (rnd + 1) if aligned else math.nan,
        }
        table.add_round(row, {"smashed.up": int(gib_per_round * GIB)})
    table.write(folder / "metrics.parquet")
    return folder


@pytest.fixture
def make_lm_run(tmp_path: Path) -> Callable[..., Path]:
    """write_lm_run rooted in tmp_path: make_lm_run("lm/a", "fsl_sage", [3.0, 2.5], 2.0)."""

    def make(relative: str, method: str, losses: Sequence[float], gib: float, **kw) -> Path:
        return write_lm_run(tmp_path / relative, method, losses, gib, **kw)

    return make


@pytest.fixture
def legends(monkeypatch) -> list[list[str]]:
    """Legend texts of every figure the plotting module finishes, in order."""
    from fslsage_ray.outputs import plots

    seen: list[list[str]] = []
    finish = plots._finish

    def spy(*args, **kwargs):
        fig = finish(*args, **kwargs)
        seen.append([t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()])
        return fig

    monkeypatch.setattr(plots, "_finish", spy)
    return seen


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """write_run rooted in tmp_path: make_run("sweep/a", "fsl_sage", [...], 2.0)."""

    def make(relative: str, method: str, accs: Sequence[float], gib: float, **kw) -> Path:
        return write_run(tmp_path / relative, method, accs, gib, **kw)

    return make


@pytest.fixture
def sweep(make_run: Callable[..., Path], tmp_path: Path) -> Path:
    """A Dirichlet sweep: three methods at three alphas; FSL-SAGE aligns every 2 rounds.

    Lower alpha (more heterogeneous) lowers every accuracy by the same step.
    """
    curves = {
        "fsl_sage": ([0.30, 0.55, 0.70, 0.80, 0.84], 10.0),
        "fedavg": ([0.35, 0.60, 0.75, 0.82, 0.86], 30.0),
        "sflv2": ([0.25, 0.50, 0.65, 0.72, 0.78], 20.0),
    }
    for alpha, penalty in ((0.1, 0.2), (1.0, 0.1), (10.0, 0.0)):
        for method, (accs, gib) in curves.items():
            make_run(
                f"sweep/{method}-a{alpha:g}",
                method,
                [a - penalty for a in accs],
                gib,
                partition="dirichlet",
                alpha=alpha,
                align_every=2 if method == "fsl_sage" else 0,
            )
    return tmp_path / "sweep"
