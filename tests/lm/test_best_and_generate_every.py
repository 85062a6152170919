"""The best round's models (checkpoint_best.pt, `generate --checkpoint best`) and the
generation columns of run.generate_every: both read the run and change nothing it learns,
books or simulates; the columns are what `generate` finds for the same round's models."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from lm_helpers import TINY, need_e2e, run_tiny  # noqa: E402

from fslsage_ray.config import ConfigError, load_config  # noqa: E402
from fslsage_ray.outputs.metrics import TIMING_COLUMNS  # noqa: E402

pytest.importorskip("sacrebleu")

ROUNDS = 3
FAST = [
    "runtime.backend=inprocess",
    "algorithm.name=sflv2",
    f"run.rounds={ROUNDS}",
    "data.train_subset=150",
    "system.profile=broadband",  # simulated time must not move either
]
LIMIT = 4
GENERATE = ["run.generate_every=2", f"run.generate_limit={LIMIT}", "run.keep_best=false"]
GEN_COLUMNS = {"gen_bleu", "gen_rouge_l", "gen_nist", "gen_s"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A plain run (best kept by default, last checkpoint at the end) and the same run with
    generation columns every 2 rounds (and no best file)."""
    need_e2e()
    root = tmp_path_factory.mktemp("gen")
    plain = run_tiny(root / "plain", *FAST, f"run.checkpoint_every={ROUNDS}")
    scored = run_tiny(root / "scored", *FAST, *GENERATE)
    return root, plain, scored


def _clean(v):
    return None if isinstance(v, float) and math.isnan(v) else v


def test_generation_columns_change_no_learning_column(runs) -> None:
    _, plain, scored = runs
    assert GEN_COLUMNS <= set(scored[0]) and not GEN_COLUMNS & set(plain[0])
    skip = set(TIMING_COLUMNS) | GEN_COLUMNS
    learning = [
        [{k: _clean(v) for k, v in r.items() if k not in skip} for r in rows]
        for rows in (plain, scored)
    ]
    assert learning[0] == learning[1]  # test loss, bytes, simulated time: bit for bit
    assert "sim_time_s" in learning[0][0]
    measured = [r["round"] for r in scored if _clean(r["gen_bleu"]) is not None]
    assert measured == [1, 2]  # every 2nd round and the last
    for r in scored:
        if r["round"] in measured:
            assert 0 <= r["gen_bleu"] <= 100 and 0 <= r["gen_rouge_l"] <= 100 and r["gen_s"] > 0


def test_the_columns_are_what_generate_finds_for_that_round(runs) -> None:
    """The last round's gen_bleu equals a greedy `generate` of the same MRs from the plain
    run's last checkpoint (the same models: the runs learn the same)."""
    from fslsage_ray.lm.beam_search import BeamSettings
    from fslsage_ray.lm.generate import generate_run

    root, _, scored = runs
    result = generate_run(root / "plain", "last", BeamSettings(beam_size=1), limit=LIMIT)
    assert result["round"] == ROUNDS - 1 and result["mrs"] == LIMIT
    assert scored[-1]["gen_bleu"] == pytest.approx(result["bleu"], abs=1e-9)
    assert scored[-1]["gen_rouge_l"] == pytest.approx(result["rouge_l"], abs=1e-9)


def test_best_checkpoint_is_the_best_rounds_models(runs) -> None:
    """checkpoint_best.pt comes from the round of the lowest test loss and holds that round's
    models: `generate --checkpoint best` builds the same client part and head (so decodes the
    same texts) as the resumable checkpoint of that round."""
    from fslsage_ray.cli import main
    from fslsage_ray.lm.generate import load_split
    from fslsage_ray.outputs.best_checkpoint import load_best

    root, plain, _ = runs
    losses = [r["test_loss"] for r in plain]
    best = load_best(root / "plain")
    assert best["round"] == losses.index(min(losses))
    assert best["headline"] == {"column": "test_loss", "goal": "min", "value": min(losses)}
    assert best["round"] == ROUNDS - 1  # the tiny run improves every round: its last one
    from_best, from_last = load_split(root / "plain", "best"), load_split(root / "plain", "last")
    for a, b in ((from_best.client, from_last.client), (from_best.head, from_last.head)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    args = ["--checkpoint", "best", "--limit", "2", "--beam", "2", "--max-new-tokens", "8"]
    assert main(["generate", str(root / "plain"), *args]) == 0
    import json

    written = json.loads((root / "plain" / "generation.json").read_text())
    assert (written["checkpoint"], written["round"]) == ("best", best["round"])


def test_generate_best_without_a_best_file_is_one_line(runs, capsys) -> None:
    from fslsage_ray.cli import main

    root, _, _ = runs
    assert not (root / "scored" / "checkpoint_best.pt").exists()  # run.keep_best=false
    assert main(["generate", str(root / "scored"), "--checkpoint", "best"]) != 0
    err = capsys.readouterr().err.strip()
    assert "no checkpoint_best.pt in" in err and len(err.splitlines()) == 1


def test_summary_shows_the_generation_columns(runs) -> None:
    from fslsage_ray.outputs.runs import load_run
    from fslsage_ray.outputs.summary import summarize, to_markdown

    root, _, scored = runs
    rows = summarize([load_run(root / "scored")], None)
    assert rows[0]["gen_bleu"] == scored[-1]["gen_bleu"]
    assert "| gen BLEU | gen ROUGE-L |" in to_markdown(rows, None)


class _Backend:
    """What BestKeeper asks of a backend: the server's head, read on the server host."""

    def __init__(self, head: torch.nn.Module) -> None:
        self.head = head

    def inspect(self, measure, parts, *args):
        class Host:
            class server:  # noqa: N801 - the attribute the real host has
                pass

        Host.server.eval_head = lambda: self.head
        return measure(Host, parts, *args)


def test_best_keeper_keeps_the_best_round_and_drops_a_stale_one(tmp_path) -> None:
    """Rows decide: a worse round keeps the earlier file, a tie too; going back to an
    earlier checkpoint (a resume, a lost worker) removes a file from a later round."""
    from fslsage_ray.outputs.best_checkpoint import best_round
    from fslsage_ray.run.best import BestKeeper, keeps_best
    from fslsage_ray.tasks.language_model import LanguageModelling

    config = load_config(None, [*TINY])
    task = LanguageModelling.__new__(LanguageModelling)  # only its class attributes are read
    assert keeps_best(config, task)
    assert not keeps_best(load_config(None, [*TINY, "run.keep_best=false"]), task)
    assert not keeps_best(load_config(None, []), _image_task())
    keeper = BestKeeper(config, task, "fp", tmp_path)
    backend = _Backend(torch.nn.Linear(2, 2))
    parts = {"client": {"w": torch.zeros(1)}}
    rows: list[dict] = []
    for t, loss in enumerate([3.0, 2.0, 2.5, 2.0, float("nan")]):
        rows.append({"round": t, "test_loss": loss})
        kept = keeper.after_round(t, rows, backend, parts)
        assert kept == (t in (0, 1))
    assert best_round(tmp_path) == 1
    keeper.restore(1)
    assert best_round(tmp_path) == 1  # from a round the checkpoint holds: kept
    keeper.restore(0)
    assert best_round(tmp_path) is None  # from a round to be redone: removed


def _image_task():
    from fslsage_ray.tasks.classification import ImageClassification

    return ImageClassification.__new__(ImageClassification)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["run.generate_every=2"], "needs model.name=gpt2 and data.name=e2e"),
        ([*TINY, "run.generate_every=-1"], "run.generate_every must be >= 0"),
        ([*TINY, "run.generate_every=2", "run.generate_limit=0"], "generate_limit must be >= 1"),
        ([*TINY, "run.generate_every=2", "run.generate_beam=0"], "generate_beam must be >= 1"),
        ([*TINY, "run.generate_limit=5"], "while run.generate_every is off"),
    ],
)
def test_bad_generation_settings_are_refused_in_one_line(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(None, overrides)
    assert len(str(caught.value).splitlines()) == 1


def test_a_resume_refuses_changing_what_generation_measures() -> None:
    from fslsage_ray.config import config_to_dict
    from fslsage_ray.outputs.checkpoint import config_differences

    saved = config_to_dict(load_config(None, [*TINY, "run.generate_every=2"]))
    for change in ("run.generate_every=3", "run.generate_limit=7", "run.generate_beam=4"):
        again = load_config(None, [*TINY, "run.generate_every=2", change])
        assert [d.split(":")[0] for d in config_differences(saved, again)] == [change.split("=")[0]]
    same = load_config(None, [*TINY, "run.generate_every=2", "run.keep_best=false"])
    assert config_differences(saved, same) == []  # keeping the best measures nothing


@pytest.mark.ray
@pytest.mark.slow
def test_generation_columns_are_the_same_on_ray_actors(runs, ray_local) -> None:
    """On 2 client actors and a server actor the scores (decoded in the server actor) and
    every learning column equal the in-process run's; the best file is written there too."""
    from fslsage_ray.outputs.best_checkpoint import load_best

    root, plain, scored = runs
    on_ray = run_tiny(
        root / "ray",
        *[o for o in FAST if o != "runtime.backend=inprocess"],
        *GENERATE[:2],
        "runtime.num_actors=2",
    )
    skip = set(TIMING_COLUMNS) | {"gen_s"}
    assert [{k: _clean(v) for k, v in r.items() if k not in skip} for r in on_ray] == [
        {k: _clean(v) for k, v in r.items() if k not in skip} for r in scored
    ]
    ray_best, here = load_best(root / "ray"), load_best(root / "plain")
    assert ray_best["round"] == here["round"]
    for key, value in here["eval_head"].items():
        assert torch.equal(ray_best["eval_head"][key], value)
