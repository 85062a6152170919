"""Generation scores during training (run.generate_every): a fixed subset of test meaning
representations decoded through the round's split model, scored with the E2E metrics.

Built on the probes' machinery: `GenerationProbe` is a server probe, measured on the server
host through `Backend.inspect` by `measure_on_server` (torch's random state forked, its own
generator), reading the round's aggregated client part and the server's evaluation head; it
switches them to eval mode for the decoding and puts their modes back. Nothing a round learns,
books or simulates depends on it (tests/lm/test_generate_every.py holds the learning columns
bit for bit). It has its own schedule (every run.generate_every rounds and the last), not
probes.every, and is not listed in probes.list: it is a language-model measurement, not a
leakage probe.

The subset is the first run.generate_limit test MRs in file order (data.test_subset applies),
the same MRs `fslsage-ray generate --limit N` decodes, so a column and a later `generate` of
the same round agree. The decoding is `BeamSettings(beam_size=run.generate_beam)`: greedy by
default (beam width 10, `generate`'s, costs about ten times as much per round on a CPU); the
length penalty, the 4-gram ban and the 64-token limit are the LoRA paper's.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import torch

from fslsage_ray.algorithms.base import Parts
from fslsage_ray.config import Config
from fslsage_ray.lm.beam_search import BeamSettings, beam_search, split_logits_fn
from fslsage_ray.lm.e2e_metrics import score_texts
from fslsage_ray.lm.generate import TestSet, test_set
from fslsage_ray.probes.base import Probe, ProbeSite
from fslsage_ray.probes.on_server import measure_on_server
from fslsage_ray.runtime.backend import Backend
from fslsage_ray.tasks.base import Task

GENERATION_COLUMNS = ("gen_bleu", "gen_rouge_l", "gen_nist")
DECODE_BATCH = 8  # prompts decoded together (the result does not depend on it)


class GenerationProbe(Probe):
    """BLEU, ROUGE-L and NIST of the fixed test MRs' texts (NaN where a metric's package is
    not installed)."""

    name: ClassVar[str] = "generation"

    def __init__(self, settings: BeamSettings, config: Config, task: Task, tests: TestSet) -> None:
        super().__init__(settings, config, task)
        self.tests = tests

    def columns(self) -> tuple[str, ...]:
        return GENERATION_COLUMNS

    def measure(self, site: ProbeSite, generator: torch.Generator) -> dict[str, float]:
        from tokenizers import Tokenizer

        from fslsage_ray.data.tokenizer import TextTokenizer

        tokenizer = TextTokenizer(Tokenizer.from_str(site.task.tokenizer_json), "the run's")
        models = (site.client, site.head)
        modes = [m.training for m in models]
        for m in models:
            m.eval()
        try:
            tokens = beam_search(
                split_logits_fn(site.client, site.head),
                self.tests.prompts,
                tokenizer.eos_id,
                self.settings,
                max_positions=self.config.model.gpt2.n_positions,
                batch_size=DECODE_BATCH,
                device=site.device,
            )
        finally:
            for m, mode in zip(models, modes, strict=True):
                m.train(mode)
        texts = [tokenizer.decode(t).strip() for t in tokens]
        scores = score_texts(texts, self.tests.references)
        return {
            column: float("nan") if scores.get(key) is None else float(scores[key])
            for column, key in zip(GENERATION_COLUMNS, ("bleu", "rouge_l", "nist"), strict=True)
        }


class GenerationRunner:
    """The run's generation columns, as the round driver asks for them."""

    def __init__(self, config: Config, task: Task) -> None:
        self.config = config
        tests = test_set(config, task, config.run.generate_limit)
        settings = BeamSettings(beam_size=config.run.generate_beam)
        self.probe = GenerationProbe(settings, config, task, tests)

    def columns(self, t: int, backend: Backend, parts: Parts) -> dict[str, Any]:
        """Round t's scores and `gen_s`, the seconds they took (none off a generation round)."""
        if not self.config.run.is_generation_round(t):
            return {}
        started = time.perf_counter()
        # No probe set: generation reads the test MRs it carries.
        out = backend.inspect(measure_on_server, parts, [self.probe], None, t)
        out["gen_s"] = time.perf_counter() - started
        return out
