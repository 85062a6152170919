"""``fslsage-ray generate RUN_DIR``: decode every test meaning representation of a run and
score the texts with the E2E metrics.

The models are the ones the run evaluates: the aggregated client part from the checkpoint's
global parts, then the server's evaluation head restored from the checkpoint's server state
(for SplitFed-MS and FSL-AN the average of the server copies), rebuilt the way a run builds
them, on one device, without Ray. ``--checkpoint best`` decodes the models of the round with
the best test loss instead (checkpoint_best.pt, run.keep_best: client part and evaluation head
as that round evaluated them). ``--checkpoint initial`` decodes with the untrained model
instead (the same seed's initial weights): the baseline every trained BLEU is read against.

The test MRs are the distinct ``mr`` values among the run's test rows (``data.test_subset``
applies), in file order; each is scored against every reference the test file gives it.
Writes ``predictions.txt`` (one text per MR, in that order) and ``generation.json``
(decoding settings, checkpoint round, scores, the MRs) into the run folder.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fslsage_ray.config import Config, ConfigError, config_from_dict, load_config
from fslsage_ray.data.subset import config_subset
from fslsage_ray.lm.beam_search import BeamSettings, beam_search, split_logits_fn
from fslsage_ray.lm.e2e_metrics import score_texts
from fslsage_ray.outputs.generation_scores import GENERATION_FILE

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.txt"
CHECKPOINTS = ("last", "best", "initial")


@dataclass
class TrainedSplit:
    """A run's evaluated model as two parts, in eval mode, and what it came from."""

    config: Config
    task: Any  # LanguageModelling
    client: nn.Module
    head: nn.Module
    round: int  # the round the models come from; -1: the initial model
    checkpoint: str = "last"  # which: last | best | initial


@dataclass(frozen=True)
class TestSet:
    """The MRs to decode, their prompts as token ids, and every reference of each."""

    mrs: list[str]
    prompts: list[list[int]]
    references: list[list[str]]


def load_split(run_dir: str | Path, checkpoint: str = "last", device: str = "cpu") -> TrainedSplit:
    """The client part and server head of a run folder's checkpoint (or of its start)."""
    from fslsage_ray.algorithms.registry import get_algorithm
    from fslsage_ray.experiment import WorldSpec, build_template, initial_aux, load_data, partition
    from fslsage_ray.models.frozen import load_own_state
    from fslsage_ray.outputs.best_checkpoint import load_best
    from fslsage_ray.outputs.checkpoint import load_checkpoint
    from fslsage_ray.outputs.run_dir import CONFIG_FILE
    from fslsage_ray.runtime.server_host import ServerHost

    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"--checkpoint must be one of {CHECKPOINTS}, got {checkpoint!r}")
    run_dir = Path(run_dir)
    if checkpoint == "initial":  # the run's config is enough; a checkpoint need not exist
        payload = None
        config = load_config(run_dir / CONFIG_FILE)
    else:
        payload = load_best(run_dir) if checkpoint == "best" else load_checkpoint(run_dir)
        config = config_from_dict(payload["config"])
    if config.model.name != "gpt2" or config.data.name != "e2e":
        raise ConfigError(
            f"generate needs a GPT-2 run on E2E; {run_dir} trained {config.model.name} on "
            f"{config.data.name}"
        )
    data = load_data(config)
    if payload is not None and data.task.fingerprint() != payload["task"]:
        raise ConfigError(
            f"the data and tokenizer now give {data.task.fingerprint()}, the checkpoint was "
            f"trained with {payload['task']}: the test texts would not be the run's"
        )
    sizes = {cid: len(part) for cid, part in enumerate(partition(config, data.train_keys))}
    world = WorldSpec(config, data.task)
    host = ServerHost(world, data.test, sizes, torch.device(device))
    if payload is None:
        template = build_template(world)
        parts = get_algorithm(config).initial_parts(
            template, initial_aux(template, config.run.seed)
        )
        round_done = -1
    else:
        if "eval_head" in payload:  # the best round's head, without its frozen weights
            load_own_state(host.server.eval_head(), payload["eval_head"], "the best head")
        elif "backend" in payload:  # else: saved before round 0, the initial server
            host.restore_shared(payload["backend"]["server"])
        parts = payload["global_parts"]
        round_done = int(payload["round"])
    client_state = parts["full"] if "full" in parts else parts["client"]
    client, head = host.eval_models(client_state).value  # the models themselves, unboxed
    client, head = client.to(device).eval(), head.to(device).eval()
    return TrainedSplit(config, data.task, client, head, round_done, checkpoint)


def test_set(config: Config, task, limit: int | None = None) -> TestSet:
    """The run's test MRs (first ``limit`` of them), their prompts, and grouped references."""
    from tokenizers import Tokenizer

    from fslsage_ray.data.e2e import (
        e2e_paths,
        format_prompt,
        grouped_references,
        read_e2e,
        restaurant_groups,
    )
    from fslsage_ray.data.tokenizer import TextTokenizer

    data = config.data
    _, test_path = e2e_paths(data.data_dir, data.train_path, data.test_path)
    rows = read_e2e(test_path)
    chosen = config_subset(restaurant_groups(rows)[0], config, "test")
    used = rows if chosen is None else [rows[i] for i in chosen]
    every = dict(grouped_references(rows))
    mrs = [mr for mr, _ in grouped_references(used)]
    if limit is not None:
        mrs = mrs[:limit]
    tokenizer = TextTokenizer(Tokenizer.from_str(task.tokenizer_json), "the run's tokenizer")
    prompts = [
        tokenizer.encode(format_prompt(mr, data.prompt_format)) + [tokenizer.eos_id] for mr in mrs
    ]
    return TestSet(mrs, prompts, [every[mr] for mr in mrs])


def merge_lora(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every LoRA adapter folded into its base weight (the same
    function, one matrix product fewer per layer)."""
    from fslsage_ray.models.lora import FusedQVLoRA

    merged = copy.deepcopy(module)
    for name, sub in list(merged.named_modules()):
        for child_name, child in list(sub.named_children()):
            if isinstance(child, FusedQVLoRA):
                base = child.base
                with torch.no_grad():
                    base.weight.copy_(child.merged_weight())
                setattr(sub, child_name, base)
        del name
    return merged


def decode_texts(
    split: TrainedSplit,
    prompts: Sequence[Sequence[int]],
    settings: BeamSettings,
    batch_size: int = 8,
    device: str = "cpu",
    lora_merged: bool = False,
) -> list[str]:
    """Beam-search every prompt through client part then server head; texts stripped."""
    from tokenizers import Tokenizer

    from fslsage_ray.data.tokenizer import TextTokenizer

    client, head = split.client, split.head
    if lora_merged:
        client, head = merge_lora(client), merge_lora(head)
    tokenizer = TextTokenizer(Tokenizer.from_str(split.task.tokenizer_json), "the run's")
    tokens = beam_search(
        split_logits_fn(client, head),
        prompts,
        tokenizer.eos_id,
        settings,
        max_positions=split.config.model.gpt2.n_positions,
        batch_size=batch_size,
        device=device,
    )
    return [tokenizer.decode(t).strip() for t in tokens]


def generate_run(
    run_dir: str | Path,
    checkpoint: str = "last",
    settings: BeamSettings | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    lora_merged: bool = False,
) -> dict[str, Any]:
    """Decode, score, and write predictions.txt and generation.json; returns the latter."""
    settings = settings or BeamSettings()
    run_dir = Path(run_dir)
    started = time.perf_counter()
    split = load_split(run_dir, checkpoint, device)
    tests = test_set(split.config, split.task, limit)
    texts = decode_texts(split, tests.prompts, settings, batch_size, device, lora_merged)
    decode_s = time.perf_counter() - started
    # The texts first: without sacrebleu they are still there to score elsewhere.
    (run_dir / PREDICTIONS_FILE).write_text("".join(t.replace("\n", " ") + "\n" for t in texts))
    scores = score_texts(texts, tests.references)
    result = {
        "checkpoint": checkpoint,
        "round": split.round,
        "decoding": asdict(settings),
        "lora_merged": lora_merged,
        "prompt_format": split.config.data.prompt_format,
        "mrs": len(tests.mrs),
        "references": sum(len(r) for r in tests.references),
        "limit": limit,
        "seconds": round(decode_s, 2),
        **scores,
        "meaning_representations": tests.mrs,
    }
    (run_dir / GENERATION_FILE).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return result
