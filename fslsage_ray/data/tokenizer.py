"""Text tokenizers that work offline: GPT-2's from a local folder, or a BPE trained on the data.

With pretrained GPT-2 weights the tokenizer must be GPT-2's own (``tokenizer_path``, a folder
holding ``tokenizer.json`` or ``vocab.json`` + ``merges.txt``). Without them any tokenizer
will do, and a byte-level BPE trained on the training texts keeps the vocabulary, and so the
embedding matrix and LM head, small. Training takes seconds; the result is cached under a
hash of the texts and vocabulary size, so every process of a run (and later runs) loads the
same one instead of training again.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fslsage_ray.data.dataset import DataError

EOS_TOKEN = "<|endoftext|>"  # GPT-2's end-of-text token; the trained BPE uses it too
TOKENIZER_FILE = "tokenizer.json"
DEFAULT_CACHE = Path("~/.cache/fslsage_ray/tokenizers")
_CACHE_FORMAT = "bytelevel-bpe-v1"  # bump when the training recipe changes


@dataclass
class TextTokenizer:
    """A ``tokenizers.Tokenizer`` with the few things the data layer and generation need.

    There is no padding token: padding reuses ``eos_id``, and the attention mask and the -100
    labels keep it out of attention and out of the loss.
    """

    tokenizer: object  # tokenizers.Tokenizer
    source: str  # for the run log, e.g. "GPT-2 tokenizer from /models/gpt2-medium"

    def __post_init__(self) -> None:
        eos = self.tokenizer.token_to_id(EOS_TOKEN)
        if eos is None:
            raise DataError(f"tokenizer ({self.source}) has no {EOS_TOKEN} token")
        self.eos_id: int = int(eos)
        self.pad_id: int = self.eos_id

    @property
    def vocab_size(self) -> int:
        """Ids run from 0 to vocab_size - 1: the model's vocabulary must be at least this."""
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, no special tokens added."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def save(self, folder: str | Path) -> Path:
        """Write ``tokenizer.json`` into ``folder`` (``load_tokenizer`` reads it back)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return _atomic_save(self.tokenizer, folder / TOKENIZER_FILE)


def _atomic_save(tokenizer, target: Path) -> Path:
    """Save via a temporary file and rename, so concurrent workers never read half a file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tokenizer-", suffix=".json")
    os.close(fd)
    try:
        tokenizer.save(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _from_folder(folder: Path):
    """A tokenizer saved as tokenizer.json, or GPT-2's original vocab.json + merges.txt."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    if not folder.is_dir():
        raise DataError(f"tokenizer_path {str(folder)!r} is not a folder")
    if (folder / TOKENIZER_FILE).is_file():
        return Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    vocab, merges = folder / "vocab.json", folder / "merges.txt"
    if vocab.is_file() and merges.is_file():
        tokenizer = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        if tokenizer.token_to_id(EOS_TOKEN) is not None:
            tokenizer.add_special_tokens([EOS_TOKEN])  # marks GPT-2's id 50256, adds nothing
        return tokenizer
    raise DataError(f"{folder} holds neither {TOKENIZER_FILE} nor vocab.json + merges.txt")


def texts_digest(texts: Sequence[str], vocab_size: int) -> str:
    """Hex digest naming a trained tokenizer: recipe, vocabulary size and every text."""
    digest = hashlib.sha256(f"{_CACHE_FORMAT}\n{vocab_size}\n".encode())
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))  # length-prefixed: no ambiguity
        digest.update(data)
    return digest.hexdigest()


def train_bpe(texts: Sequence[str], vocab_size: int):
    """A byte-level BPE (GPT-2's scheme) with EOS_TOKEN as its only special token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte stays encodable
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def load_tokenizer(
    texts: Iterable[str] | None,
    tokenizer_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    vocab_size: int = 4096,
) -> TextTokenizer:
    """GPT-2's tokenizer from ``tokenizer_path``, else a BPE trained on ``texts`` (cached).

    ``texts`` are the training texts (prompts and targets); they are ignored when
    ``tokenizer_path`` is given. The trained vocabulary can come out smaller than
    ``vocab_size`` on a small corpus: size the model from ``.vocab_size``.
    """
    if tokenizer_path is not None:
        folder = Path(tokenizer_path).expanduser()
        return TextTokenizer(_from_folder(folder), f"tokenizer from {folder}")
    if vocab_size < 257:
        raise DataError(f"vocab_size must be >= 257 (256 bytes + {EOS_TOKEN}), got {vocab_size}")
    corpus = [] if texts is None else list(texts)
    if not corpus:
        raise DataError("no training texts to train a tokenizer on, and no tokenizer_path")
    root = Path(cache_dir).expanduser() if cache_dir is not None else DEFAULT_CACHE.expanduser()
    folder = root / texts_digest(corpus, vocab_size)[:24]
    if (folder / TOKENIZER_FILE).is_file():
        tokenizer = _from_folder(folder)
        return TextTokenizer(tokenizer, f"byte-level BPE ({vocab_size}) cached at {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_bpe(corpus, vocab_size)
    _atomic_save(tokenizer, folder / TOKENIZER_FILE)
    return TextTokenizer(
        tokenizer,
        f"byte-level BPE ({vocab_size}) trained on {len(corpus)} texts, cached at {folder}",
    )
