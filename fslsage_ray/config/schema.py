"""The experiment as a tree of frozen dataclasses: the sections every run has.

Each section validates itself at construction, so an impossible value is refused before any
data is read or any Ray process starts. Each field is marked with what it does to a run
(config/effects.py). Settings that belong to one algorithm, model family or data source live
with their owner and are registered with it (config/owned.py, fslsage_ray/registry.py).
"""

from __future__ import annotations

import re
from dataclasses import InitVar, dataclass, field, replace
from typing import Any, ClassVar

from fslsage_ray import registry
from fslsage_ray.config.effects import budget, display, layout, results
from fslsage_ray.config.errors import ConfigError
from fslsage_ray.config.owned import chosen_settings, complete_sections, settings_class
from fslsage_ray.config.probes import ProbesConfig
from fslsage_ray.config.system import SystemConfig
from fslsage_ray.registry import algorithm_names, dataset_names, model_names


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


PARTITIONS = ("iid", "dirichlet", "shards")
BACKENDS = ("ray", "inprocess")
DEVICES = ("auto", "cpu", "cuda")
UPLOAD_ORDERS = ("deterministic", "arrival")
SERVER_ORDERS = ("interleaved", "client_major")
ALIGN_ON = ("workers", "clients", "server")
TRACKERS = ("none", "mlflow", "tensorboard", "wandb")
PLACEMENT_STRATEGIES = ("pack", "spread", "strict_spread")
PROMPT_FORMATS = ("raw", "authors")
AUTO = "auto"  # runtime.actor_num_gpus / server_num_gpus: sized from the memory plan


@dataclass(frozen=True)
class DataConfig:
    name: str = results("digits")  # digits | cifar10 | cifar100 | parquet | a registered data set
    data_dir: str | None = results(None)  # folder with {name}-train/test.parquet or torchvision
    # files
    train_path: str | None = results(None)  # parquet only: encoded images + labels
    test_path: str | None = results(None)
    num_classes: int | None = results(None)  # parquet only (cifar/digits know theirs)
    train_subset: int | None = results(None)  # use a class-balanced subset of the training set
    test_subset: int | None = results(None)
    download: bool = layout(True)  # torchvision download when no local copy exists
    augment: bool | None = results(None)  # None: the data set's default (crop+flip for CIFAR)
    partition: str = results("iid")  # iid | dirichlet | shards (over classes; for e2e, restaurants)
    alpha: float = results(1.0)  # Dirichlet concentration (smaller = more heterogeneous)
    shards_per_client: int = results(2)
    seq_len: int = results(128)  # text: every sequence padded or cut to this many tokens
    tokenizer_path: str | None = results(None)  # text: a GPT-2 tokenizer folder; None: a byte-level
    # BPE trained on the training texts (cached), saved into the run folder
    vocab_size: int = results(4096)  # text: the trained BPE's target size (it may come out smaller)
    prompt_format: str = results("raw")  # e2e: the CSV's mr text, or "authors": the LoRA
    # repository's "name : X | Type : Y | ..." rewriting that the FSL-SAGE authors trained on
    sections: dict[str, Any] = results(factory=dict)  # data sources' own settings, by sub-section
    # (`data: {name: iris, iris: {...}}`); YAML holds them in place, not under this name

    OWNER_KIND: ClassVar[str] = registry.DATA

    def __post_init__(self) -> None:
        known = dataset_names()
        _require(self.name in known, f"data.name must be one of {known}, got {self.name!r}")
        object.__setattr__(self, "sections", complete_sections("data", self.name, self.sections))
        _require(
            self.partition in PARTITIONS,
            f"data.partition must be one of {PARTITIONS}, got {self.partition!r}",
        )
        _require(
            self.alpha > 0, f"data.alpha must be > 0 (Dirichlet concentration), got {self.alpha}"
        )
        _require(self.shards_per_client >= 1, "data.shards_per_client must be >= 1")
        for key in ("train_subset", "test_subset", "num_classes"):
            value = getattr(self, key)
            _require(value is None or value >= 1, f"data.{key} must be >= 1, got {value}")
        _require(self.seq_len >= 2, f"data.seq_len must be >= 2, got {self.seq_len}")
        _require(self.vocab_size >= 260, f"data.vocab_size must be >= 260, got {self.vocab_size}")
        _require(
            self.prompt_format in PROMPT_FORMATS,
            f"data.prompt_format must be one of {PROMPT_FORMATS}, got {self.prompt_format!r}",
        )
        if self.name == "parquet":
            _require(
                self.train_path is not None and self.test_path is not None,
                "data.name=parquet needs data.train_path and data.test_path",
            )
            _require(self.num_classes is not None, "data.name=parquet needs data.num_classes")

    @property
    def settings(self) -> Any:
        """The chosen data source's own settings (None: it has none)."""
        return chosen_settings("data", self.name, self.sections)


TRANSFERS = ("trainable", "all")
PRECISIONS = ("fp32", "bf16")  # how the parts compute (tasks/compute.py)


@dataclass(frozen=True)
class ModelConfig:
    name: str = results("cnn")  # model family: cnn | resnet18 | gpt2 | a registered family
    aux: str = results("two_blocks")  # image AM shape: linear | one_block | two_blocks |
    # server_copy
    transfer: str = results("trainable")  # what a model transfer sends (and the ledger counts): the
    # state without frozen parameters (LoRA: the adapters), or "all" of it (the authors' count)
    precision: str = results("fp32")  # fp32 | bf16: autocast in every part's forward pass (the
    # cut's activations and gradients stay float32, so the bytes sent do not change)
    channels_last: bool = results(False)  # images: NHWC memory for inputs and convolution weights
    sections: dict[str, Any] = results(factory=dict)  # model families' own settings, by
    # sub-section (`model: {name: gpt2, gpt2: {...}}`); YAML holds them in place
    gpt2: InitVar[Any] = None  # code may still pass ModelConfig(gpt2=Gpt2Config(...))

    OWNER_KIND: ClassVar[str] = registry.MODEL

    def __post_init__(self, gpt2: Any) -> None:
        known = model_names()
        _require(self.name in known, f"model.name must be one of {known}, got {self.name!r}")
        given = self.sections if gpt2 is None else {**self.sections, "gpt2": gpt2}
        object.__setattr__(self, "sections", complete_sections("model", self.name, given))
        _require(self.transfer in TRANSFERS, f"model.transfer must be one of {TRANSFERS}")
        _require(
            self.precision in PRECISIONS,
            f"model.precision must be one of {PRECISIONS}, got {self.precision!r}",
        )

    @property
    def settings(self) -> Any:
        """The chosen family's own settings (None: it has none)."""
        return chosen_settings("model", self.name, self.sections)


def _gpt2(model: ModelConfig) -> Any:
    """`model.gpt2`, readable as before: the given section, else its defaults."""
    return model.sections.get("gpt2") or _owned(registry.MODEL, "gpt2")()


ModelConfig.gpt2 = property(_gpt2)  # type: ignore[assignment] # after the InitVar's default


@dataclass(frozen=True)
class OptimConfig:
    """The optimizer of every model part (client, server, AMs): Adam, the spec's for the image
    experiments, or AdamW, the text setting's."""

    name: str = results("adam")  # adam (weight decay as L2) | adamw (decoupled, the text setting)
    lr: float = results(1e-3)
    beta1: float = results(0.9)
    beta2: float = results(0.999)
    eps: float = results(1e-8)  # Adam's epsilon, every optimizer (torch's; the authors' LM: 1e-6)
    weight_decay: float = results(1e-4)  # L2, as torch.optim.Adam applies it
    aux_lr: float = results(1e-3)  # every AM's own Adam (FSL-SAGE alignment; CSE-FSL/FSL-AN local
    # AM)
    aux_weight_decay: float = results(0.0)  # every AM's own Adam: FSL-SAGE's alignment, and the
    # local AM of CSE-FSL and FSL-AN (the authors give it the learning rate only)
    schedule: str = results("constant")  # or "linear": warm-up, then linear decay to zero (client
    # and server optimizers; each over its own planned steps)
    warmup_steps: int = results(0)
    decay_rounds: int | None = results(None)  # rounds the linear decay spans; None: run.rounds at
    # the start of the run (kept in the run folder, so a resume with more rounds keeps it)
    label_smoothing: float = results(0.0)  # on every training loss; test loss is never smoothed

    def __post_init__(self) -> None:
        _require(
            self.name in ("adam", "adamw"), f"optim.name must be adam or adamw, got {self.name!r}"
        )
        _require(
            self.schedule in ("constant", "linear"),
            f"optim.schedule must be constant or linear, got {self.schedule!r}",
        )
        _require(self.warmup_steps >= 0, "optim.warmup_steps must be >= 0")
        _require(
            self.decay_rounds is None or self.decay_rounds >= 1, "optim.decay_rounds must be >= 1"
        )
        _require(0 <= self.label_smoothing < 1, "optim.label_smoothing must be in [0, 1)")
        _require(self.lr > 0 and self.aux_lr > 0, "optim.lr and optim.aux_lr must be > 0")
        _require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "optim.beta1/beta2 must be in [0, 1)")
        _require(self.eps > 0, f"optim.eps must be > 0, got {self.eps}")
        _require(
            self.weight_decay >= 0 and self.aux_weight_decay >= 0,
            "optim weight decays must be >= 0",
        )


@dataclass(frozen=True)
class AlgorithmConfig:
    name: str = results("fsl_sage")  # fsl_sage | fsl_sage_lazy | fedavg | sflv1 | sflv2 | cse_fsl |
    # fsl_an
    num_clients: int = results(10)  # m
    batch_size: int = results(256)  # B; the last, smaller batch of an epoch is kept
    upload_every: int = results(5)  # q: a client uploads its smashed batch when it % q == 0
    clients_per_round: int | float | None = results(None)  # None: all; int: a count; float: a
    # fraction
    server_order: str = results("interleaved")  # the order the server applies a round's uploads:
    # (iteration, client) as parallel clients reach it, or "client_major": client 0's whole
    # epoch, then client 1's..., as the authors' code runs them (FSL-SAGE then fits AM_i right
    # after client i's first upload, and client i's first step uses it). No effect on FedAvg
    # and SplitFed (their order is fixed by their replies or they have no shared server)
    sections: dict[str, Any] = results(factory=dict)  # algorithms' own settings, by sub-section
    # (`algorithm: {name: fsl_sage, alignment: {...}}`); YAML holds them in place

    OWNER_KIND: ClassVar[str] = registry.ALGORITHM

    @property
    def settings(self) -> Any:
        """The chosen algorithm's own settings (None: it has none)."""
        return chosen_settings("algorithm", self.name, self.sections)

    def __post_init__(self) -> None:
        known = algorithm_names()
        _require(self.name in known, f"algorithm.name must be one of {known}, got {self.name!r}")
        sections = complete_sections("algorithm", self.name, self.sections)
        object.__setattr__(self, "sections", sections)
        _require(
            self.num_clients >= 1, f"algorithm.num_clients must be >= 1, got {self.num_clients}"
        )
        _require(self.batch_size >= 1, f"algorithm.batch_size must be >= 1, got {self.batch_size}")
        _require(
            self.upload_every >= 1,
            f"algorithm.upload_every (q) must be >= 1, got {self.upload_every}",
        )
        _require(
            self.server_order in SERVER_ORDERS,
            f"algorithm.server_order must be one of {SERVER_ORDERS}, got {self.server_order!r}",
        )
        k = self.clients_per_round
        _require(
            k is None
            or (isinstance(k, int) and 1 <= k <= self.num_clients)
            or (isinstance(k, float) and 0 < k <= 1),
            "algorithm.clients_per_round must be a count in [1, num_clients] or a fraction in "
            f"(0, 1], got {k!r}",
        )


@dataclass(frozen=True)
class RuntimeConfig:
    backend: str = layout("ray")  # ray | inprocess (same algorithm, no Ray: debugging and
    # reference)
    device: str = layout("auto")  # auto | cpu | cuda. auto: the in-process backend uses CUDA when
    # torch sees it, a Ray actor when it holds a GPU. cpu: never CUDA. cuda: refuse to run without
    # it
    address: str | None = layout(None)  # attach to this Ray cluster; None: RAY_ADDRESS or a
    # private local Ray
    num_actors: int | None = layout(None)  # client actors; None: as many as the resources allow
    clients_per_actor: int | None = layout(None)  # force packing; None: spread clients evenly
    actor_num_cpus: float = layout(1.0)
    actor_num_gpus: float | str = layout(0.0)  # fractions such as 0.25 pack several actors on one
    # GPU; "auto": the share the memory plan needs, with clients per actor and the in-flight
    # window chosen so it fits (memory/fit.py)
    actor_memory_gb: float = layout(0.0)  # memory each client actor reserves (0: no reservation)
    actor_resources: dict[str, float] = layout(factory=dict)  # custom, e.g. {slot: 1}
    server_num_cpus: float = layout(0.0)  # 0: the server shares the client actors' cores (it
    # computes a fraction of a round and idles in FedAvg); reserve some on a cluster
    server_num_gpus: float | str = layout(0.0)  # or "auto", as actor_num_gpus
    server_memory_gb: float = layout(0.0)
    server_resources: dict[str, float] = layout(factory=dict)
    placement_strategy: str = layout("pack")  # how the actors' bundles (server's included) go onto
    # nodes: pack (fewest nodes) | spread (across nodes, best effort) | strict_spread (one a node)
    placement_timeout_s: float = layout(30.0)  # wait this long for the reservation, then refuse;
    # make it long on an autoscaling cluster, where the pending reservation is what asks for new
    # nodes
    local_num_cpus: int | None = layout(None)  # CPUs a private local Ray advertises; None: all
    # cores
    local_num_gpus: int | None = layout(None)
    gpu_memory_gb: float | None = layout(None)  # GiB of one GPU, for the "auto" shares; None:
    # the driver's visible GPU, else Ray's accelerator type (memory/fit.py)
    client_state_budget_gb: float | None = layout(None)  # per client actor: idle clients above it
    # go to local disk and come back when next scheduled (None: keep all in memory)
    server_state_budget_gb: float | None = layout(None)  # per-client state on the server
    # (FSL-SAGE's alignment buffers and AM optimizers, SplitFed-MS/FSL-AN's server copies): idle
    # clients' above it go to local disk and come back when next needed (None: keep all in memory)
    stream_participants: bool = layout(True)  # the budgets above hold within a round too: a
    # participant's state is loaded before it steps and may go back to disk after, so memory
    # does not grow with participants (same results); false: a round's participants all stay
    # in memory until it ends
    job_window: int = layout(512)  # server jobs (FSL-SAGE's AM fitting) are prepared, run and
    # delivered this many clients at a time, so their jobs never all exist at once (same results)
    torch_threads: int | None = layout(None)  # per process, equal everywhere so results do not
    # depend on layout; None: from the client actor's CPU share, fixed at start (config.yaml)
    pin_malloc: bool = layout(True)  # fix glibc's mmap threshold in every process
    # (runtime/allocator.py): without it a fresh Ray worker maps and zero-fills every activation
    # (ResNet-18: 15% slower)
    upload_order: str = results("deterministic")  # or "arrival": faster, not reproducible
    max_inflight_uploads: int = layout(8)  # back-pressure: a client host waits beyond this many
    # (SplitFed: this many of an actor's clients' batches go in one call, then their dL/dz back)
    dashboard: bool = layout(False)
    align_on: str = layout("workers")  # where AMs are fitted, same results anywhere: "workers"
    # (every client actor, plus the server actor when it reserves CPUs or GPUs of its own),
    # "clients" (client actors only) or "server" (the server actor, one after another)
    eval_on: str = layout("workers")  # "workers": the test batches shared out over every worker
    # that fits AMs (same metrics: terms added in batch order); "server": the server alone
    call_timeout_s: float = layout(3600.0)  # an actor silent this long counts as lost
    max_restarts: int = layout(3)  # lost workers replaced this many times before the run stops

    def __post_init__(self) -> None:
        _require(self.backend in BACKENDS, f"runtime.backend must be one of {BACKENDS}")
        _require(
            self.device in DEVICES,
            f"runtime.device must be one of {DEVICES}, got {self.device!r}",
        )
        _require(
            self.upload_order in UPLOAD_ORDERS,
            f"runtime.upload_order must be one of {UPLOAD_ORDERS}",
        )
        _require(self.num_actors is None or self.num_actors >= 1, "runtime.num_actors must be >= 1")
        _require(
            self.clients_per_actor is None or self.clients_per_actor >= 1,
            "runtime.clients_per_actor must be >= 1",
        )
        for key in ("actor_num_gpus", "server_num_gpus"):
            _require(
                not isinstance(getattr(self, key), str) or getattr(self, key) == AUTO,
                f"runtime.{key} must be a number or {AUTO!r}, got {getattr(self, key)!r}",
            )
        for key in (
            "actor_num_cpus",
            "actor_num_gpus",
            "actor_memory_gb",
            "server_num_cpus",
            "server_num_gpus",
            "server_memory_gb",
        ):
            _require(self._amount(key) >= 0, f"runtime.{key} must be >= 0")
        _require(
            self.gpu_memory_gb is None or self.gpu_memory_gb > 0,
            f"runtime.gpu_memory_gb must be > 0 (or null), got {self.gpu_memory_gb}",
        )
        for key in ("actor_num_gpus", "server_num_gpus"):
            amount = self._amount(key)
            _require(
                amount <= 1 or amount == int(amount),
                f"runtime.{key} must be a share of one GPU (<= 1) or a whole number of GPUs, "
                f"as Ray places them; got {amount}",
            )
        _require(
            self.placement_strategy in PLACEMENT_STRATEGIES,
            f"runtime.placement_strategy must be one of {PLACEMENT_STRATEGIES}, "
            f"got {self.placement_strategy!r}",
        )
        _require(self.placement_timeout_s > 0, "runtime.placement_timeout_s must be > 0")
        for key in ("actor_resources", "server_resources"):
            for name, amount in getattr(self, key).items():
                _require(amount > 0, f"runtime.{key}.{name} must be > 0, got {amount}")
                _require(
                    name not in ("CPU", "GPU", "memory"),
                    f"runtime.{key}: ask for {name} with the num_cpus/num_gpus/memory_gb keys",
                )
        _require(
            self.actor_num_cpus > 0 or self.actor_num_gpus == AUTO or self.actor_num_gpus > 0,
            "runtime: a client actor must request some CPU or GPU",
        )
        _require(
            self.torch_threads is None or self.torch_threads >= 1,
            "runtime.torch_threads must be >= 1 (or null: from runtime.actor_num_cpus)",
        )
        _require(
            self.client_state_budget_gb is None or self.client_state_budget_gb >= 0,
            "runtime.client_state_budget_gb must be >= 0 (or null: no limit)",
        )
        _require(
            self.server_state_budget_gb is None or self.server_state_budget_gb >= 0,
            "runtime.server_state_budget_gb must be >= 0 (or null: no limit)",
        )
        _require(
            self.local_num_cpus is None or self.local_num_cpus >= 1,
            f"runtime.local_num_cpus must be >= 1 (null: all cores), got {self.local_num_cpus}",
        )
        _require(
            self.local_num_gpus is None or self.local_num_gpus >= 0,
            f"runtime.local_num_gpus must be >= 0, got {self.local_num_gpus}",
        )
        _require(self.max_inflight_uploads >= 1, "runtime.max_inflight_uploads must be >= 1")
        _require(self.job_window >= 1, "runtime.job_window must be >= 1")
        _require(self.call_timeout_s > 0, "runtime.call_timeout_s must be > 0")
        _require(
            self.eval_on in ("workers", "server"),
            f"runtime.eval_on must be 'workers' or 'server', got {self.eval_on!r}",
        )
        _require(
            self.align_on in ALIGN_ON,
            f"runtime.align_on must be one of {ALIGN_ON}, got {self.align_on!r}",
        )
        _require(self.max_restarts >= 0, "runtime.max_restarts must be >= 0")
        _require(
            not (self.device == "cuda" and self.backend == "ray")
            or (self._amount("actor_num_gpus", 1) > 0 and self._amount("server_num_gpus", 1) > 0),
            "runtime.device=cuda on Ray needs runtime.actor_num_gpus > 0 and "
            "runtime.server_num_gpus > 0 (an actor computes on CUDA only with a GPU reserved)",
        )

    def _amount(self, key: str, auto: float = 0.0) -> float:
        """A resource amount, "auto" read as `auto` (decided later, from the memory plan)."""
        value = getattr(self, key)
        return auto if value == AUTO else value

    @property
    def gpus_auto(self) -> bool:
        """Whether a GPU share is left to the memory plan (runtime.*_num_gpus=auto)."""
        return AUTO in (self.actor_num_gpus, self.server_num_gpus)


@dataclass(frozen=True)
class RunConfig:
    name: str = display("run")
    rounds: int = budget(20)
    seed: int = results(200)
    out_dir: str = display("runs")
    max_gib: float | None = budget(None)  # stop once this much communication is spent
    count_labels: bool = results(False)  # count uploaded labels in the ledger (the paper does not)
    authors_ledger: bool = results(False)  # also price every message as the authors' GPT-2 code
    # books it (frozen weights, causal masks, KV presents): authors_comm_* columns next to
    # comm_*, the project's own ledger unchanged (docs/lm_authors_code.md); gpt2 only
    eval_batch_size: int = results(1000)
    checkpoint_every: int = display(10)  # rounds between checkpoints (0: never); resume continues
    # exactly
    stop_at_accuracy: float | None = budget(None)  # stop after the first round at or above this
    # test accuracy (a fraction, e.g. 0.81): "GiB to reach X%" runs need nothing beyond that round
    stop_at_loss: float | None = budget(None)  # the same for tasks judged by test loss (text)
    max_minutes: float | None = budget(None)  # stop after the round that passes this wall time
    tracker: str = display("none")  # none | mlflow | tensorboard | wandb: also log to a tracker
    # (offline; each is an extra: pip install 'fslsage-ray[mlflow]')
    tracker_uri: str | None = display(None, logged=False)  # mlflow: tracking URI (default: file
    # store mlruns/ next to the run folder); tensorboard: log folder (default: <run
    # folder>/tensorboard); wandb: its dir (default: the run folder). Credentials go in the
    # tracker's env variables, never here
    tracker_project: str = display("fslsage-ray")  # MLflow experiment / W&B project
    callbacks: list[str] = display(factory=list)  # "package.module:Name" run callbacks:
    # they watch and add columns, learning does not depend on them (may change on --resume)
    keep_best: bool | None = display(None)  # also keep checkpoint_best.pt: the models of
    # the round with the best headline so far (client part + server eval head, no optimiser),
    # for `generate --checkpoint best`; None: on for language models, off for images
    generate_every: int | None = results(None)  # language models: decode run.generate_limit
    # test MRs every this many rounds (and the last), gen_bleu/gen_rouge_l columns; None/0: off
    generate_limit: int = results(20)  # the first this many test MRs (file order), fixed
    generate_beam: int = results(1)  # beam width of that decoding (1: greedy, cheap on CPU;
    # `generate` uses the LoRA paper's 10); length penalty 0.9, no repeated 4-grams, 64 tokens

    def __post_init__(self) -> None:
        _require(self.rounds >= 1, f"run.rounds must be >= 1, got {self.rounds}")
        _require(self.seed >= 0, f"run.seed must be >= 0, got {self.seed}")
        _require(self.max_gib is None or self.max_gib > 0, "run.max_gib must be > 0")
        _require(self.eval_batch_size >= 1, "run.eval_batch_size must be >= 1")
        _require(self.checkpoint_every >= 0, "run.checkpoint_every must be >= 0 (0: never)")
        _require(
            self.stop_at_accuracy is None or 0 < self.stop_at_accuracy <= 1,
            f"run.stop_at_accuracy is a fraction in (0, 1], got {self.stop_at_accuracy}",
        )
        _require(
            self.stop_at_loss is None or self.stop_at_loss > 0,
            f"run.stop_at_loss must be > 0, got {self.stop_at_loss}",
        )
        _require(
            self.max_minutes is None or self.max_minutes > 0,
            f"run.max_minutes must be > 0, got {self.max_minutes}",
        )
        _require(
            self.tracker in TRACKERS,
            f"run.tracker must be one of {TRACKERS}, got {self.tracker!r}",
        )
        _require(
            self.tracker_uri is None or not re.search(r"//[^/@]*@", self.tracker_uri),
            "run.tracker_uri must not hold credentials (user:password@), since it is saved "
            "with the run; give them in the tracker's own environment variables",
        )
        _require(bool(self.tracker_project.strip()), "run.tracker_project must not be empty")
        _require(
            self.generate_every is None or self.generate_every >= 0,
            f"run.generate_every must be >= 0 (0 or null: off), got {self.generate_every}",
        )
        _require(
            self.generate_limit >= 1, f"run.generate_limit must be >= 1, got {self.generate_limit}"
        )
        _require(
            self.generate_beam >= 1, f"run.generate_beam must be >= 1, got {self.generate_beam}"
        )

    @property
    def generates(self) -> bool:
        """Whether test MRs are decoded during training (run.generate_every set)."""
        return bool(self.generate_every)

    def is_generation_round(self, t: int) -> bool:
        """Round t (from 0) decodes: every generate_every rounds (t+1 divisible) and the last."""
        every = self.generate_every
        return bool(every) and ((t + 1) % every == 0 or t + 1 == self.rounds)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    run: RunConfig = field(default_factory=RunConfig)
    system: SystemConfig = field(default_factory=SystemConfig)  # simulated time (off: none)
    probes: ProbesConfig = field(default_factory=ProbesConfig)  # leakage probes (off: none)
    plugins: list[str] = results(factory=list)  # modules that register algorithms, models or
    # data sets (fslsage_ray.registry); imported first, in every process
    alignment: InitVar[Any] = None  # code may still pass Config(alignment=AlignmentConfig(...))

    def __post_init__(self, alignment: Any) -> None:
        if alignment is not None:
            sections = {**self.algorithm.sections, "alignment": alignment}
            object.__setattr__(self, "algorithm", replace(self.algorithm, sections=sections))
        _require(
            not (
                self.algorithm.server_order == "client_major"
                and self.runtime.upload_order == "arrival"
            ),
            "algorithm.server_order=client_major is a fixed order; it cannot be combined with "
            "runtime.upload_order=arrival",
        )
        _require(
            not self.run.generates or (self.model.name == "gpt2" and self.data.name == "e2e"),
            "run.generate_every decodes E2E meaning representations: it needs model.name=gpt2 "
            f"and data.name=e2e, not {self.model.name} on {self.data.name}",
        )


def _owned(kind: str, section: str) -> type:
    """A settings class by its registered section (through the registry: config sits below
    the algorithms and models that own these classes, so it names them, never imports them)."""
    found = settings_class(kind, section)
    if found is None:
        raise AttributeError(f"no settings are registered as {kind}.{section}")
    return found


def _alignment(config: Config) -> Any:
    """`config.alignment`, readable as before: FSL-SAGE's settings (algorithm.alignment) as
    given, else their defaults, whichever algorithm runs."""
    return config.algorithm.sections.get("alignment") or _owned(registry.ALGORITHM, "alignment")()


Config.alignment = property(_alignment)  # type: ignore[assignment] # after the InitVar's default


def __getattr__(name: str) -> Any:
    """Old import paths: the owners' settings now live with their owners."""
    if name == "AlignmentConfig":
        return _owned(registry.ALGORITHM, "alignment")
    if name == "Gpt2Config":
        return _owned(registry.MODEL, "gpt2")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
