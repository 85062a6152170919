"""Independent jobs at the same time as Ray tasks, yielded as each finishes.

`compare --parallel` and `scale --parallel` both send whole in-process runs to the cluster:
one CPU per run, as many at once as the cluster's CPUs hold. They share this one pool, so
Ray stays under `runtime/` and the two commands cannot drift apart in how they schedule.
The caller connects to Ray first (runtime/cluster.connect) and fixes each run's thread count
before sending it, so a run learns exactly what it learns alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

Result = TypeVar("Result")


def as_finished(
    job: Callable[..., Result],
    arguments: Sequence[tuple[Any, ...]],
    fresh_worker: bool = False,
) -> Iterator[tuple[int, Result]]:
    """`job(*arguments[i])` for every i as a Ray task of one CPU; yields (i, result) in the
    order the tasks finish, so a caller can record each before the others end. With
    `fresh_worker` every task gets a new worker process (no memory left over from an earlier
    task: what a study that samples each run's memory needs)."""
    import ray

    options: dict[str, Any] = {"num_cpus": 1}
    if fresh_worker:
        options["max_calls"] = 1
    task = ray.remote(**options)(job)
    pending = {task.remote(*args): i for i, args in enumerate(arguments)}
    while pending:
        (ready,), _ = ray.wait(list(pending), num_returns=1)
        yield pending.pop(ready), ray.get(ready)
