"""A scaling study's design: the same experiment at each client count, per method and seed.

Two ways to grow the client count: `split` divides the same training set over more clients
(a round's compute stays about the same, the per-client work a simulator adds grows), and
`per_client` gives every client N samples (the data grow with the clients). Every config is
built and validated before the first run; a study that needs more samples than the data set
has is refused in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from fslsage_ray.compare import parse_int_list, with_overrides
from fslsage_ray.config import Config, ConfigError
from fslsage_ray.registry import known_train_size

DATA_MODES = ("split", "per_client")


def parse_counts(text: str) -> list[int]:
    """`10,100,1000` -> [10, 100, 1000]: distinct positive integers, in the order given."""
    return parse_int_list(text, "--clients", 1, "10,100")


@dataclass(frozen=True)
class StudyRun:
    """One run of the study: its folder name and validated config."""

    name: str
    method: str
    clients: int
    seed: int
    config: Config


def train_size(config: Config) -> int:
    """Training samples the data set has (before data.train_subset), decoding only where its
    registration knows the size in advance (CIFAR's, when its parquet files are in place).
    Loading here also refuses a bad data_dir before any Ray starts."""
    from fslsage_ray.experiment import load_data

    known = known_train_size(config)
    if known is not None:
        return known
    whole = replace(config, data=replace(config.data, train_subset=None))
    return len(load_data(whole).train_keys)


def design_study(
    config: Config,
    methods: Sequence[str],
    counts: Sequence[int],
    seeds: Sequence[int] | None,
    data: str = "split",
    samples_per_client: int | None = None,
) -> list[StudyRun]:
    """Every run, in the order they run: by count, then method, then seed (the small counts
    first, so the first figures come early)."""
    if data not in DATA_MODES:
        raise ConfigError(f"--data {data!r} must be one of {', '.join(DATA_MODES)}")
    if data == "per_client":
        if not samples_per_client or samples_per_client < 1:
            raise ConfigError("--data per_client needs --samples-per-client N (N >= 1)")
        need, have = samples_per_client * max(counts), train_size(config)
        if need > have:
            raise ConfigError(
                f"{max(counts)} clients x {samples_per_client} samples need {need} training "
                f"samples; {config.data.name} has {have}"
            )
    elif samples_per_client is not None:
        raise ConfigError("--samples-per-client applies to --data per_client only")
    runs = []
    for count in counts:
        extra = [f"algorithm.num_clients={count}"]
        if data == "per_client":
            extra.append(f"data.train_subset={samples_per_client * count}")
        for method in methods:
            for seed in seeds or [config.run.seed]:
                name = f"{method}-n{count}-seed{seed}"
                overrides = [f"algorithm.name={method}", f"run.name={name}", f"run.seed={seed}"]
                runs.append(
                    StudyRun(
                        name, method, count, seed, with_overrides(config, [*overrides, *extra])
                    )
                )
    return runs
