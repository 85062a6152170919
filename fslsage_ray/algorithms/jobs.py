"""Server jobs: server work done per client between local phases (FSL-SAGE's alignment).

A backend runs them without knowing what they are:
1. `Server.prepare_jobs(cids)`: the server's part, in client order (for FSL-SAGE: the true
   gradients g*, which move the server model's BatchNorm statistics);
2. each job runs on the server (`Server.run_job`) or on the idle host of its client
   (`Client.run_job`, which keeps the result);
3. `Server.complete_job(outcome)` adopts the result and returns a `JobReport` for the
   coordinator (bytes, figures; never model states) and, when the client does not already
   hold the result, a delivery for it (`Client.accept_delivery`).
"""

from __future__ import annotations

from dataclasses import dataclass

# The figures FSL-SAGE's alignment reports (mean over clients of ||g_hat - g*||^2 / ||g*||^2
# before and after fitting): in train mode (as the clients use the AM, dropout on), then in
# eval mode (dropout off on the AM and on the server's g*; NaN where the task's models draw
# no random numbers, as images: there the two differ only in BatchNorm statistics, which the
# AM always takes from its batch). Every built-in algorithm names them as its job figures,
# NaN where it has no alignment, so that the tables of different algorithms share one schema.
AM_ERROR_FIGURES = (
    "am_rel_error_before",
    "am_rel_error_after",
    "am_rel_error_eval_before",
    "am_rel_error_eval_after",
)


@dataclass(frozen=True)
class JobReport:
    """What the coordinator learns of one client's job: what it sent and how it went."""

    cid: int
    bytes: dict[str, int]  # ledger kind -> bytes, e.g. {"aux_model.down": ...}
    metrics: dict[str, float]  # averaged over clients into the round's row (job figures)
