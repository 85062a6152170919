"""The E2E NLG metrics of generated texts against several references each, offline.

Computed with maintained packages, nothing downloaded:

- BLEU: sacrebleu's corpus BLEU (13a tokenization, cased, 4-grams, brevity penalty against
  the closest reference length), every reference of an MR as one reference stream;
- NIST: NLTK's ``corpus_nist`` (5-grams) on sacrebleu's 13a tokens, when NLTK is installed;
- ROUGE-L: rouge-score's F-measure, the best over an MR's references, averaged over MRs,
  when rouge-score is installed.

Not computed: METEOR (NLTK's needs the WordNet corpus, a download) and CIDEr (its only
packaged implementation, pycocoevalcap, is unmaintained since 2020 and ships Java for its
other metrics). The E2E challenge's own script (e2e-metrics) computes all five with its own
tokenization, so figures here are comparable among this project's runs and close to, not
identical with, published ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

LM_EXTRA = "pip install 'fslsage-ray[lm]'"


class MetricsUnavailable(RuntimeError):
    """sacrebleu is not installed: generation can still write its predictions."""


def _streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """References per MR -> sacrebleu's reference streams (stream k holds every MR's k-th
    reference, None where an MR has fewer)."""
    most = max((len(refs) for refs in references), default=0)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(most)]


def bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Corpus BLEU (0-100) and its parts: n-gram precisions, brevity penalty, lengths."""
    try:
        from sacrebleu.metrics import BLEU
    except ImportError as exc:
        raise MetricsUnavailable(f"BLEU needs sacrebleu ({LM_EXTRA})") from exc
    _check(predictions, references)
    metric = BLEU()
    result = metric.corpus_score(list(predictions), _streams(references))
    return {
        "bleu": float(result.score),
        "precisions": [float(p) for p in result.precisions],
        "brevity_penalty": float(result.bp),
        "hyp_len": int(result.sys_len),
        "ref_len": int(result.ref_len),
        "signature": str(metric.get_signature()),
    }


def nist(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float | None:
    """NLTK's corpus NIST (5-grams) on 13a tokens; None without NLTK."""
    try:
        from nltk.translate.nist_score import corpus_nist
        from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    except ImportError:
        return None
    _check(predictions, references)
    tokenize = Tokenizer13a()
    hyps = [tokenize(p).split() for p in predictions]
    refs = [[tokenize(r).split() for r in group] for group in references]
    longest = max((len(h) for h in hyps), default=0)
    if longest == 0:
        return 0.0
    # An order no hypothesis reaches adds nothing to NIST, but NLTK divides by its count.
    return float(corpus_nist(refs, hyps, n=min(5, longest)))


def rouge_l(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float | None:
    """Mean over MRs of the best ROUGE-L F-measure against its references (0-100); None
    without rouge-score."""
    try:
        from rouge_score.rouge_scorer import RougeScorer
    except ImportError:
        return None
    _check(predictions, references)
    scorer = RougeScorer(["rougeL"])
    if not predictions:
        return 0.0
    total = sum(
        scorer.score_multi(list(refs), pred)["rougeL"].fmeasure
        for pred, refs in zip(predictions, references, strict=True)
    )
    return 100.0 * total / len(predictions)


def score_texts(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Every metric available here; ``not_computed`` says which are missing and why."""
    scores: dict[str, Any] = bleu(predictions, references)
    scores["nist"] = nist(predictions, references)
    scores["rouge_l"] = rouge_l(predictions, references)
    scores["not_computed"] = {
        "meteor": "NLTK's METEOR needs the WordNet corpus (a download)",
        "cider": "no maintained offline package (pycocoevalcap: 2020, bundles Java)",
    }
    for name, package in (("nist", "nltk"), ("rouge_l", "rouge-score")):
        if scores[name] is None:
            scores["not_computed"][name] = f"{package} is not installed ({LM_EXTRA})"
    return scores


def _check(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference groups")
    empty = [i for i, refs in enumerate(references) if not refs]
    if empty:
        raise ValueError(f"MR(s) {empty[:5]} have no reference")
