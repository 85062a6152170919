"""Run as a script by test_elastic.py: a real 2-node Ray cluster on 127.0.0.1 that grows and
shrinks during a run. Prints one JSON line with what happened.

Client actors each need one unit of the custom resource `slot`: the head has 1, the node
that joins after round 1 brings 2 more (so the pool grows from 1 to 3 actors), and that
node is removed after round 3 (its actors die in round 4; the pool shrinks back to 1 and
round 4 is redone from the checkpoint).
"""

from __future__ import annotations

import json
import os
import sys

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from fslsage_ray.config import load_config  # noqa: E402
from fslsage_ray.run.driver import RoundDriver  # noqa: E402
from fslsage_ray.runtime.ray_backend import RayBackend  # noqa: E402
from fslsage_ray.simulation import Simulation  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from run_helpers import SMALL, assert_same_learning  # noqa: E402


def main(out: str) -> None:
    head = {"num_cpus": 2, "resources": {"slot": 1}}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    ray.init(address=cluster.address, log_to_driver=False)
    events: list[str] = []
    extra = {"node": None}
    original_start = RayBackend.start_round

    def start_round(self, parts, expected, participants):
        events.append(f"round with {self.layout.num_actors} actors")
        original_start(self, parts, expected, participants)

    rounds_done = []
    original_round = RoundDriver.play_round

    def counted_round(driver, t, *rest):
        result = original_round(driver, t, *rest)
        rounds_done.append(t)
        if t == 1 and extra["node"] is None:
            extra["node"] = cluster.add_node(num_cpus=2, resources={"slot": 2})
            cluster.wait_for_nodes()
        if t == 3 and extra["node"] not in (None, "removed"):
            cluster.remove_node(extra["node"])
            extra["node"] = "removed"
        return result

    RayBackend.start_round = start_round
    RoundDriver.play_round = counted_round
    try:
        config = load_config(
            None,
            [
                *SMALL,
                "run.rounds=6",
                "run.checkpoint_every=1",
                f"runtime.address={cluster.address}",
                "runtime.actor_resources={slot: 1}",
                "runtime.num_actors=null",
            ],
        )
        rows = Simulation(config, run_dir=f"{out}/elastic", progress=False).run().to_pylist()
    finally:
        RoundDriver.play_round = original_round
        ray.shutdown()
        cluster.shutdown()
    reference = (
        Simulation(
            load_config(None, [*SMALL, "run.rounds=6", "runtime.backend=inprocess"]),
            run_dir=f"{out}/reference",
            progress=False,
        )
        .run()
        .to_pylist()
    )
    try:
        assert_same_learning(reference, rows)
        same = "yes"
    except AssertionError as exc:
        same = str(exc)
    print(
        json.dumps(
            {
                "events": events,
                "rounds_done": rounds_done,
                "same": same,
                "acc": [r["test_acc"] for r in rows],
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
