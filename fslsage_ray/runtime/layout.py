"""Why the processes are laid out as they are: the lines `fslsage-ray info` prints."""

from __future__ import annotations

from fslsage_ray.config.schema import RuntimeConfig
from fslsage_ray.runtime.allocator import torch_threads


def explain_layout(
    runtime: RuntimeConfig, server_request: dict[str, float], uses_server: bool = True
) -> list[str]:
    """One line each: threads per process, where the server computes, where AMs are
    fitted, where the test set is evaluated (`uses_server`: the algorithm sends anything to
    a main server; FedAvg does not, and gets no server actor)."""
    threads = torch_threads(runtime)
    why = (
        "runtime.torch_threads"
        if runtime.torch_threads is not None
        else f"the client actor's whole CPUs (runtime.actor_num_cpus={runtime.actor_num_cpus:g})"
    )
    own = server_request.get("CPU", 0.0) > 0 or server_request.get("GPU", 0.0) > 0
    server = (
        f"the server actor reserves {server_request}"
        if own
        else "the server actor reserves no CPU: it computes on the client actors' cores while "
        "they wait for it (runtime.server_num_cpus=0), so every core hosts a client actor"
    )
    where = {
        "server": "in the server actor, one after another (runtime.align_on=server)",
        "clients": "on the client actors, each its own clients' (runtime.align_on=clients)",
        "workers": "on every client actor (its own clients')"
        + (", and an equal share on the server actor" if own else "")
        + " (runtime.align_on=workers)",
    }[runtime.align_on]
    evaluation = (
        "on the server actor (runtime.eval_on=server)"
        if runtime.eval_on == "server"
        else "test batches shared out over every worker that fits AMs, terms added in batch "
        "order (runtime.eval_on=workers)"
    )
    if not uses_server:
        server = (
            "none: the algorithm sends nothing to a main server, so no server actor is "
            "started; the driver averages and builds the evaluation models"
        )
        evaluation = "test batches shared out over the client actors, terms added in batch order"
    return [
        f"torch threads per process: {threads}, from {why}; fixed at start in config.yaml",
        f"server: {server}",
        f"AM alignment: {where}",
        f"evaluation: {evaluation}",
    ]
