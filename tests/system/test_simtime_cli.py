"""`fslsage-ray simtime` replays a finished run to the seconds the run itself recorded, and
`plan --profile` prices each round's messages."""

from __future__ import annotations

import pyarrow.parquet as pq

from fslsage_ray.cli import main

TINY = [
    "runtime.backend=inprocess",
    "run.rounds=2",
    "algorithm.num_clients=3",
    "data.train_subset=300",
    "data.test_subset=100",
    "alignment.epochs=2",
    "alignment.every=1",
]


def test_a_replayed_run_has_the_seconds_the_run_recorded(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", "--out", str(run), "--quiet", *TINY, "system.profile=broadband"]) == 0
    recorded = pq.read_table(run / "metrics.parquet").to_pylist()
    out = tmp_path / "replayed"
    assert main(["simtime", str(run), "--profile", "broadband", "--out", str(out)]) == 0
    replayed = pq.read_table(out / "run" / "metrics.parquet").to_pylist()
    sim = [{k: v for k, v in r.items() if k.startswith("sim_")} for r in recorded]
    assert [{k: r[k] for k in sim[0]} for r in replayed] == sim
    assert (out / "accuracy_vs_time.png").is_file()
    assert "simulated s" in (out / "summary.md").read_text()
    capsys.readouterr()
    assert main(["plan", "--profile", "mobile", "--rounds", "2", *TINY]) == 0
    assert capsys.readouterr().out.count(" s on mobile |") == 2
