"""data.prompt_format=authors: the LoRA repository's rewriting of the E2E meaning
representations (the text the FSL-SAGE authors' pre-tokenized files hold); references
grouped per MR for the generation metrics."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from lm_helpers import E2E, TINY, need_e2e  # noqa: E402

from fslsage_ray.config import ConfigError, load_config  # noqa: E402
from fslsage_ray.data.e2e import (  # noqa: E402
    authors_prompt,
    format_prompt,
    grouped_references,
    read_e2e,
)


def test_authors_prompt_renames_slots_and_splits_prices() -> None:
    mr = (
        "name[The Mill], eatType[pub], food[Fast food], priceRange[£20-25], "
        "customer rating[3 out of 5], area[city centre], familyFriendly[yes], near[Café Sicilia]"
    )
    assert authors_prompt(mr) == (
        "name : The Mill | Type : pub | food : Fast food | price : £ 20 - 25 | "
        "customer rating : 3 out of 5 | area : city centre | family friendly : yes | "
        "near : Café Sicilia"
    )
    assert (
        authors_prompt("name[X], priceRange[more than £30]") == "name : X | price : more than £ 30"
    )
    assert format_prompt(mr, "raw") == mr
    assert authors_prompt("no slots here") == "no slots here"


def test_references_are_grouped_per_mr_in_file_order() -> None:
    rows = [("a", "1"), ("b", "2"), ("a", "3")]
    assert grouped_references(rows) == [("a", ["1", "3"]), ("b", ["2"])]


def test_the_test_file_has_several_references_per_mr() -> None:
    need_e2e()
    groups = grouped_references(read_e2e(E2E / "testset_w_refs.csv"))
    assert len(groups) == 630 and sum(len(refs) for _, refs in groups) == 4693


def test_authors_format_changes_only_the_prompt() -> None:
    need_e2e()
    from tokenizers import Tokenizer

    from fslsage_ray.experiment import load_data

    longer = ["data.seq_len=128", "model.gpt2.n_positions=128"]  # its prompts are longer
    texts = {}
    for fmt in ("raw", "authors"):
        data = load_data(load_config(None, [*TINY, *longer, f"data.prompt_format={fmt}"]))
        tokenizer = Tokenizer.from_str(data.task.tokenizer_json)
        ids, labels = data.test["input_ids"][0], data.test["labels"][0]
        start = int((labels != -100).argmax()) + 1  # the first target token
        texts[fmt] = (
            tokenizer.decode(ids[: start - 1].tolist()),
            tokenizer.decode(ids[start : start + int((labels != -100).sum()) - 1].tolist()),
        )
    mr = texts["raw"][0]  # the subset's first row, the same in both
    assert mr in {row[0] for row in read_e2e(E2E / "testset_w_refs.csv")}
    assert texts["authors"][0] == authors_prompt(mr) != mr
    assert texts["raw"][1] == texts["authors"][1]  # the same target text
    with pytest.raises(ConfigError, match="data.prompt_format must be one of"):
        load_config(None, [*TINY, "data.prompt_format=lora"])
