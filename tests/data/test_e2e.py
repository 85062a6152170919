"""E2E NLG loading (CSV and JSON lines), fixed-length encoding, refusals, offline tokenizer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download at test time
pytest.importorskip("tokenizers")

from fslsage_ray.data.dataset import DataError  # noqa: E402
from fslsage_ray.data.e2e import (  # noqa: E402
    TEST_FILE,
    TRAIN_FILE,
    e2e_texts,
    encode_e2e,
    load_e2e,
    read_e2e,
    restaurant_name,
)
from fslsage_ray.data.tokenizer import load_tokenizer  # noqa: E402

E2E = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "e2e"
ROWS = [
    ("name[Aromi], eatType[pub], food[Italian]", "Aromi is an Italian pub."),
    ("name[The Eagle], area[riverside]", "The Eagle is by the riverside, near the river."),
    ("name[Aromi], familyFriendly[yes]", "Aromi is family friendly."),
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(e2e_texts(ROWS * 3), cache_dir=tmp_path_factory.mktemp("tok"))


def _write_csv(path: Path, rows, header: str = "mr,ref") -> Path:
    lines = [header] + [f'"{mr}","{ref}"' for mr, ref in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_encode_layout_padding_and_cut(tokenizer) -> None:
    data = encode_e2e(ROWS, tokenizer, seq_len=48)
    assert data.input_ids.shape == data.labels.shape == data.attention_mask.shape == (3, 48)
    assert {a.dtype for a in data.arrays().values()} == {np.dtype(np.int64)}
    eos = tokenizer.eos_id
    for i, (mr, ref) in enumerate(ROWS):
        prompt = tokenizer.encode(mr) + [eos]
        target = tokenizer.encode(" " + ref) + [eos]
        n = len(prompt) + len(target)
        assert data.attention_mask[i].sum() == n and data.attention_mask[i, :n].all()
        assert list(data.input_ids[i, :n]) == prompt + target
        assert (data.input_ids[i, n:] == tokenizer.pad_id).all()
        scored = data.labels[i] != -100
        # exactly the target tokens are scored, each predicted from the position before it
        assert list(data.labels[i][scored]) == target
        assert np.flatnonzero(scored)[0] == len(prompt) - 1
    assert data.group_names == ("Aromi", "The Eagle")
    assert list(data.groups) == [0, 1, 0]
    assert data.cut_rows == 0

    prompt_len = len(tokenizer.encode(ROWS[1][0])) + 1
    cut = encode_e2e(ROWS[1:2], tokenizer, seq_len=prompt_len + 2)
    assert cut.cut_rows == 1 and cut.attention_mask.all()
    full = tokenizer.encode(ROWS[1][0]) + [eos] + tokenizer.encode(" " + ROWS[1][1])
    # the last position still predicts the first token beyond the window
    assert list(cut.labels[0, prompt_len - 1 :]) == full[prompt_len : prompt_len + 3]


def test_long_prompt_refused_naming_the_row(tokenizer) -> None:
    rows = [ROWS[0], ("name[Aromi], " + "food[Italian], " * 20, "Long.")]
    with pytest.raises(DataError, match=r"row 1 has a prompt of \d+ tokens") as err:
        encode_e2e(rows, tokenizer, seq_len=32, where="train.csv")
    assert "\n" not in str(err.value) and "train.csv" in str(err.value)


def test_csv_and_jsonl_read_alike(tmp_path) -> None:
    csv_rows = read_e2e(_write_csv(tmp_path / "e2e.csv", ROWS))
    jsonl = tmp_path / "e2e.jsonl"
    jsonl.write_text("".join(json.dumps({"mr": m, "ref": r}) + "\n" for m, r in ROWS))
    assert csv_rows == read_e2e(jsonl) == ROWS


def test_bad_files_refused(tmp_path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty file"):
        read_e2e(tmp_path / "empty.csv")
    with pytest.raises(DataError, match="no data rows"):
        read_e2e(_write_csv(tmp_path / "header.csv", []))
    with pytest.raises(DataError, match=r"missing column\(s\) \['ref'\]"):
        read_e2e(_write_csv(tmp_path / "cols.csv", ROWS, header="mr,text"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"mr": "name[A]", "ref": "A."}\n{"mr": "name[B]"}\n')
    with pytest.raises(DataError, match=r"line 2 lacks key\(s\) \['ref'\]"):
        read_e2e(bad)
    with pytest.raises(DataError, match="does not exist"):
        read_e2e(tmp_path / "absent.csv")


def test_restaurant_name() -> None:
    assert restaurant_name("eatType[pub], name[The Mill], area[riverside]") == "The Mill"
    assert restaurant_name("eatType[pub]") == ""


def test_tokenizer_trains_caches_and_reloads(tmp_path) -> None:
    texts = e2e_texts(ROWS * 3)
    first = load_tokenizer(texts, cache_dir=tmp_path, vocab_size=300)
    assert "trained" in first.source
    cached = list(tmp_path.glob("*/tokenizer.json"))
    assert len(cached) == 1
    again = load_tokenizer(texts, cache_dir=tmp_path, vocab_size=300)
    assert "cached" in again.source and str(cached[0].parent) in again.source
    sample = "name[Aromi] serves Zürich café food ☕"  # unseen bytes still encode (byte level)
    assert again.encode(sample) == first.encode(sample)
    assert first.decode(first.encode(sample)) == sample
    assert first.vocab_size <= 300 and first.pad_id == first.eos_id
    other = load_tokenizer(texts, cache_dir=tmp_path, vocab_size=280)  # another key
    assert "trained" in other.source and len(list(tmp_path.glob("*/tokenizer.json"))) == 2

    saved = first.save(tmp_path / "saved")  # a folder load_tokenizer reads as a given path
    from_folder = load_tokenizer(None, tokenizer_path=saved.parent)
    assert from_folder.encode(sample) == first.encode(sample)
    gpt2_style = tmp_path / "gpt2_style"  # GPT-2's original vocab.json + merges.txt layout
    gpt2_style.mkdir()
    first.tokenizer.model.save(str(gpt2_style))
    classic = load_tokenizer(None, tokenizer_path=gpt2_style)
    assert classic.encode(sample) == first.encode(sample)
    assert classic.eos_id == first.eos_id
    assert classic.decode(first.encode(sample) + [first.eos_id]) == sample

    with pytest.raises(DataError, match="no training texts"):
        load_tokenizer([], cache_dir=tmp_path)
    with pytest.raises(DataError, match="neither"):
        load_tokenizer(None, tokenizer_path=tmp_path)


def test_shared_e2e_files(tmp_path) -> None:
    if not (E2E / TRAIN_FILE).is_file():
        pytest.skip(f"E2E data folder {E2E} is absent (see ../shared/data/e2e/README.md)")
    rows = read_e2e(E2E / TRAIN_FILE)
    tokenizer = load_tokenizer(e2e_texts(rows), cache_dir=tmp_path)
    train = encode_e2e(rows, tokenizer, seq_len=128, where=TRAIN_FILE)
    test = load_e2e(E2E / TEST_FILE, tokenizer, seq_len=128)
    assert len(train) == 4672 and len(test) == 4693
    assert len(train.group_names) == 20 and "Alimentum" in train.group_names
    assert np.bincount(train.groups).min() > 0
    for data in (train, test):
        assert data.input_ids.max() < tokenizer.vocab_size
        scored = data.labels != -100
        assert scored.any(axis=1).all()  # every row has target tokens
        # labels are the next input token wherever that token is inside the window
        inside = scored[:, :-1]
        assert (data.labels[:, :-1][inside] == data.input_ids[:, 1:][inside]).all()
        assert (data.attention_mask[:, :-1][inside] == 1).all()
    assert train.cut_rows < len(train) // 100
