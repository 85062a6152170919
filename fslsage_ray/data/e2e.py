"""E2E NLG (restaurant meaning representation -> sentence) as fixed-length token arrays.

Each row becomes prompt = tokens(mr) + [EOS] and target = tokens(" " + ref) + [EOS], the
layout of the LoRA paper's E2E data that the FSL-SAGE authors train on (EOS separates the
prompt from the completion and ends it). The prompt is the raw CSV ``mr`` text
(``data.prompt_format=raw``), or with ``authors`` the LoRA repository's rewriting of it that
the authors' pre-tokenized files hold: "name : X | Type : pub | price : less than £ 20 | ...".

Sequences are right-padded (or cut) to ``seq_len``. ``labels`` are pre-shifted:
``labels[t]`` is token t + 1 where that token belongs to the target, else -100, so
``logits[:, t]`` is scored against ``labels[:, t]`` on target tokens only. Right padding
with causal attention also means real tokens never attend to padding.

Files: CSV with columns ``mr`` and ``ref`` (the challenge release), or JSON lines with keys
``mr`` and ``ref``. The shared copy in ../shared/data/e2e has no trainset.csv, so there the
development set is the training file and testset_w_refs.csv the test file.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fslsage_ray.data.dataset import DataError
from fslsage_ray.data.tokenizer import TextTokenizer

PROMPT_KEY, TARGET_KEY = "mr", "ref"
TRAIN_FILE, TEST_FILE = "devset.csv", "testset_w_refs.csv"
IGNORE_INDEX = -100  # matches fslsage_ray.tasks.text_loss
_NAME = re.compile(r"name\[([^\]]*)\]")
_SLOT = re.compile(r"\s*([^\[\],]+?)\s*\[([^\]]*)\]")
PROMPT_FORMATS = ("raw", "authors")
# The slot names of the LoRA repository's E2E files (examples/NLG/data/e2e/*.txt).
_AUTHORS_SLOTS = {"eatType": "Type", "priceRange": "price", "familyFriendly": "family friendly"}
_POUND_DIGIT = re.compile(r"£(?=\d)")
_NUMBER_DASH = re.compile(r"(?<=\d)-(?=\d)")


@dataclass(frozen=True)
class TextData:
    """One split as arrays of shape (N, T), plus one restaurant-name id per row."""

    input_ids: np.ndarray  # int64 (N, T), padding = the tokenizer's pad id
    attention_mask: np.ndarray  # int64 (N, T), 1 on real tokens
    labels: np.ndarray  # int64 (N, T), next token on target positions, else -100
    groups: np.ndarray  # int64 (N,), index into group_names (for Dirichlet splits)
    group_names: tuple[str, ...]  # sorted restaurant names
    cut_rows: int  # rows whose target was cut at seq_len

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """The model-facing arrays by name (samples first), for a task's batches."""
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "labels": self.labels,
        }


def read_e2e(path: str | Path) -> list[tuple[str, str]]:
    """(mr, ref) pairs from a CSV or JSON-lines file; DataError if unreadable or empty."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"E2E file {path} does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _read_csv(path)
    elif suffix == ".jsonl":
        rows = _read_jsonl(path)
    else:
        raise DataError(f"{path}: expected a .csv or .jsonl file")
    if not rows:
        raise DataError(f"{path}: no data rows")
    return rows


def _read_csv(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [key for key in (PROMPT_KEY, TARGET_KEY) if key not in columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; columns are {columns}")
        rows = []
        for i, row in enumerate(reader):
            mr, ref = row[PROMPT_KEY], row[TARGET_KEY]
            if mr is None or ref is None:
                raise DataError(f"{path}: row {i} (line {reader.line_num}) has too few fields")
            rows.append((mr, ref))
    return rows


def _read_jsonl(path: Path) -> list[tuple[str, str]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: line {line_no} is not JSON ({err.msg})") from None
            if not isinstance(item, dict):
                raise DataError(f"{path}: line {line_no} is not a JSON object")
            missing = [key for key in (PROMPT_KEY, TARGET_KEY) if key not in item]
            if missing:
                raise DataError(f"{path}: line {line_no} lacks key(s) {missing}")
            rows.append((str(item[PROMPT_KEY]), str(item[TARGET_KEY])))
    return rows


def restaurant_name(mr: str) -> str:
    """The ``name[...]`` value of a meaning representation ("" when it has none)."""
    match = _NAME.search(mr)
    return match.group(1).strip() if match else ""


def authors_prompt(mr: str) -> str:
    """The meaning representation as the LoRA repository's E2E files write it.

    "name[The Mill], eatType[pub], priceRange[£20-25]" becomes
    "name : The Mill | Type : pub | price : £ 20 - 25": slots in their order, three renamed,
    and the pound sign and a dash between numbers set apart as that data's tokenization does.
    A string with no ``slot[value]`` in it is returned unchanged.
    """
    slots = _SLOT.findall(mr)
    if not slots:
        return mr
    parts = []
    for slot, value in slots:
        value = _NUMBER_DASH.sub(" - ", _POUND_DIGIT.sub("£ ", value.strip()))
        parts.append(f"{_AUTHORS_SLOTS.get(slot, slot)} : {value}")
    return " | ".join(parts)


def format_prompt(mr: str, prompt_format: str = "raw") -> str:
    """The prompt text of one meaning representation (``data.prompt_format``)."""
    if prompt_format == "raw":
        return mr
    if prompt_format == "authors":
        return authors_prompt(mr)
    raise DataError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}")


def grouped_references(rows: Sequence[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """(mr, every reference of that mr), one entry per distinct mr in first-seen order.

    The E2E test file repeats an MR on one row per human reference; generation produces one
    text per MR and is scored against all of its references.
    """
    groups: dict[str, list[str]] = {}
    for mr, ref in rows:
        groups.setdefault(mr, []).append(ref)
    return list(groups.items())


def e2e_texts(rows: Sequence[tuple[str, str]], prompt_format: str = "raw") -> list[str]:
    """The strings that get tokenized (prompts and space-led targets): a tokenizer's corpus."""
    return [format_prompt(mr, prompt_format) for mr, _ in rows] + [" " + ref for _, ref in rows]


def encode_e2e(
    rows: Sequence[tuple[str, str]],
    tokenizer: TextTokenizer,
    seq_len: int,
    where: str = "E2E",
    prompt_format: str = "raw",
) -> TextData:
    """Token arrays padded or cut to ``seq_len``; a prompt that leaves no room is refused.

    A prompt of P tokens (EOS included) needs P < seq_len, so at least the first target
    token is in the window. Longer targets are cut (as the authors' loader does) and counted
    in ``cut_rows``.
    """
    if seq_len < 2:
        raise DataError(f"seq_len must be >= 2, got {seq_len}")
    n = len(rows)
    input_ids = np.full((n, seq_len), tokenizer.pad_id, dtype=np.int64)
    attention_mask = np.zeros((n, seq_len), dtype=np.int64)
    labels = np.full((n, seq_len), IGNORE_INDEX, dtype=np.int64)
    eos, cut_rows = tokenizer.eos_id, 0
    for i, (mr, ref) in enumerate(rows):
        prompt = tokenizer.encode(format_prompt(mr, prompt_format)) + [eos]
        full = prompt + tokenizer.encode(" " + ref) + [eos]
        if len(prompt) >= seq_len:
            raise DataError(
                f"{where}: row {i} has a prompt of {len(prompt)} tokens, which leaves no room "
                f"for its target within seq_len {seq_len} (mr {mr[:60]!r})"
            )
        length = min(len(full), seq_len)
        cut_rows += len(full) > seq_len
        input_ids[i, :length] = full[:length]
        attention_mask[i, :length] = 1
        # position t predicts token t + 1; score only predictions of target tokens
        stop = min(len(full) - 1, seq_len)
        labels[i, len(prompt) - 1 : stop] = full[len(prompt) : stop + 1]
    groups, group_names = restaurant_groups(rows)
    return TextData(input_ids, attention_mask, labels, groups, group_names, int(cut_rows))


def restaurant_groups(rows: Sequence[tuple[str, str]]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Each row's restaurant as an index into the sorted restaurant names (the rows' keys,
    which subsets and non-IID splits follow), and those names."""
    names = [restaurant_name(mr) for mr, _ in rows]
    group_names = tuple(sorted(set(names)))
    index = {name: k for k, name in enumerate(group_names)}
    return np.array([index[name] for name in names], dtype=np.int64), group_names


def e2e_paths(
    data_dir: str | Path | None, train_path: str | Path | None, test_path: str | Path | None
) -> tuple[Path, Path]:
    """The training and test files: explicit paths first, else the shared folder's names."""
    if data_dir is None and (train_path is None or test_path is None):
        raise DataError("data.name=e2e needs data.data_dir or data.train_path and test_path")
    folder = Path(data_dir) if data_dir is not None else Path()
    return (
        Path(train_path) if train_path else folder / TRAIN_FILE,
        Path(test_path) if test_path else folder / TEST_FILE,
    )


def load_e2e(
    path: str | Path, tokenizer: TextTokenizer, seq_len: int, prompt_format: str = "raw"
) -> TextData:
    """Read one E2E file and encode it (see :func:`encode_e2e`)."""
    return encode_e2e(read_e2e(path), tokenizer, seq_len, str(path), prompt_format)
