"""The authors' byte count as a second view (run.authors_ledger, plan --ledger authors):
sizes by hand from their code, the run's view equal to the plan's, the project's own ledger
and learning unchanged, and refused where it is not defined."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from lm_helpers import TINY, need_e2e, run_tiny  # noqa: E402

from fslsage_ray.algorithms.authors_ledger import (  # noqa: E402
    COLUMNS,
    SHAPE_BYTES,
    AuthorsView,
    authors_sizes,
    block_parameters,
    check_authors_view,
)
from fslsage_ray.config import ConfigError, load_config  # noqa: E402
from fslsage_ray.experiment import planned_authors_view, planned_sizes  # noqa: E402
from fslsage_ray.outputs.plots import plot_all  # noqa: E402
from fslsage_ray.outputs.runs import load_runs  # noqa: E402
from fslsage_ray.plan import plan_rounds  # noqa: E402
from fslsage_ray.tasks import PayloadSizes  # noqa: E402

INPROCESS = "runtime.backend=inprocess"


def _tiny(method: str, *extra: str):
    return load_config(None, [*TINY, f"algorithm.name={method}", *extra])


def test_the_tiny_gpt2_priced_by_hand_from_their_code():
    """TINY: E 32, H 2, P = T = 64, V 1024, 1 client block, 1 AM block, 2 blocks, no LoRA."""
    # One block (src/models/gpt2.py:214-221): ln_1 2E + c_attn E*3E+3E + c_proj E*E+E + ln_2 2E
    # + c_fc E*4E+4E + c_proj 4E*E+E = 64 + 3168 + 1056 + 64 + 4224 + 4128 = 12,704 floats,
    # and its causal mask (:95-98) 64 x 64 = 4,096 floats: 67,200 bytes.
    block = (64 + 3168 + 1056 + 64 + 4224 + 4128 + 64 * 64) * 4
    assert block == 67_200
    fsl = authors_sizes(_tiny("fsl_sage"), vocab_size=1024, seq_len=64)
    # client (:278-283): wte 1024 x 32 and wpe 64 x 32 floats, then its block
    assert fsl.client_model == (1024 + 64) * 32 * 4 + block == 206_464
    # AM (aux_models/gpt2.py:18-22, :60): its block, ln_f 2E, the tied head V x E
    assert fsl.aux_model == block + 2 * 32 * 4 + 1024 * 32 * 4 == 198_528
    # FedAvg's whole model: client, then the server's block and ln_f (its head is the wte)
    assert fsl.full_model == 206_464 + block + 256 == 273_920
    # per sample: hidden 64 x 32 floats; a present (gpt2.py:193) stacks K and V of
    # (H 2, T 64, E/H 16) each: 2 x 2 x 64 x 16 floats = 16,384 bytes per block
    hidden, present = 64 * 32 * 4, 2 * 2 * 64 * 16 * 4
    assert fsl.upload_per_sample == hidden + 2 * present == 40_960  # client's + the AM's
    assert fsl.upload(10) == 409_600 + 16  # and input_shape, torch.Size([10, 64])
    split = authors_sizes(_tiny("sflv2"), vocab_size=1024, seq_len=64)
    assert split.upload_per_sample == hidden + present  # booked before any other pass
    assert split.hidden_per_sample == hidden


MEDIUM = Path(__file__).parents[2] / "configs" / "e2e" / "gpt2_medium_lora.yaml"


def test_gpt2_medium_matches_the_documented_144_and_48_mib_uploads():
    fsl = authors_sizes(load_config(MEDIUM, []), vocab_size=50257, seq_len=512)
    assert fsl.upload(8) == 144 * 2**20 + SHAPE_BYTES  # 16 MiB hidden + 4 presents of 32 MiB
    sflv1 = load_config(MEDIUM, ["algorithm.name=sflv1"])
    split = authors_sizes(sflv1, vocab_size=50257, seq_len=512)
    assert split.upload(8) == 48 * 2**20 + SHAPE_BYTES
    # the client part: 206 MB of token embeddings, 4 MiB of positions, a block and its mask
    embeddings = 50257 * 1024 * 4
    assert (
        fsl.client_model - embeddings - 1024 * 1024 * 4
        == (block_parameters(1024, 4) + 1024 * 1024) * 4
    )


def test_the_block_count_is_that_of_the_models_built_here():
    """Their block and ours (transformers' GPT2Block, our LoRA on query and value) have the
    same parameters, so the formula prices the model this project trains."""
    need_e2e()
    from fslsage_ray.models.gpt2 import GPT2Settings, build_gpt2_split

    for rank in (0, 4):
        settings = GPT2Settings(2, 32, 2, 64, 1024, 64, aux_blocks=1, lora_rank=rank)
        split = build_gpt2_split(settings)
        block = split.client.h[0]
        assert sum(p.numel() for p in block.parameters()) == block_parameters(32, rank)


def test_messages_are_repriced_and_kinds_they_never_book_cost_nothing():
    sizes = authors_sizes(_tiny("sflv1"), vocab_size=1024, seq_len=64)
    ours = PayloadSizes(smashed=8192, context=64, targets=512)
    view = AuthorsView(sizes, ours)
    counts = view.round_bytes(
        [
            ("client_model.down", 999),
            ("smashed.up", 10 * (8192 + 64)),
            ("labels.up", 10 * 512),
            ("grad.down", 10 * 8192),
        ]
    )
    assert counts == {
        "client_model.down": sizes.client_model,
        "smashed.up": sizes.upload(10),
        "grad.down": 10 * 8192,
    }
    with pytest.raises(ValueError, match="whole number of samples"):
        view.message_bytes("smashed.up", 8193)
    columns = view.columns(100, {"authors_comm_bytes_cum": 2**30})  # a resumed run's last row
    assert columns["authors_comm_bytes_cum"] == 2**30 + 100
    assert columns["authors_comm_gib_cum"] == pytest.approx(1 + 100 / 2**30)


def test_it_is_refused_where_their_code_defines_no_count():
    with pytest.raises(ConfigError, match="the authors' code has no 'fsl_an'"):
        check_authors_view(_tiny("fsl_an"))
    with pytest.raises(ConfigError, match="is that of their GPT-2 code; model.name is 'cnn'"):
        check_authors_view(load_config(None, ["data.train_subset=100"]))


@pytest.mark.parametrize("method", ["fsl_sage", pytest.param("sflv2", marks=pytest.mark.slow)])
def test_the_runs_authors_view_equals_the_plans_and_leaves_its_own_ledger(method, tmp_path):
    """Every round's authors_comm_bytes equals the authors' plan (FSL-SAGE: AMs sent down
    in the alignment round, presents of client and AM; SplitFed-SS: gradients down), and
    the project's own columns still equal its own plan."""
    need_e2e()
    overrides = [INPROCESS, f"algorithm.name={method}", "run.rounds=2", "run.authors_ledger=true"]
    rows = run_tiny(tmp_path / "r", *overrides)
    config = _tiny(method, *overrides)
    client_sizes, sizes = planned_sizes(config)
    plan = plan_rounds(config, client_sizes, sizes, 2, planned_authors_view(config, sizes))
    cumulative = 0
    for row, planned in zip(rows, plan["rounds"], strict=True):
        assert row["authors_comm_bytes"] == planned["authors_total"]
        cumulative += planned["authors_total"]
        assert row["authors_comm_bytes_cum"] == cumulative
        assert row["comm_bytes"] == planned["total"]  # the project's own count, as before
        assert row["authors_comm_bytes"] > row["comm_bytes"]  # frozen weights, presents
    aligned = "aux_model.down" in plan["rounds"][0]["authors_bytes"]
    assert aligned == (method == "fsl_sage")  # round 0 aligns
    assert all(set(COLUMNS) <= set(r) for r in rows)
    # `plot` draws the headline against their count beside the one against ours
    drawn = {p.name for p in plot_all(load_runs([tmp_path / "r"]), tmp_path / "figures")}
    assert {"loss_vs_gib.png", "loss_vs_authors_gib.png"} <= drawn
