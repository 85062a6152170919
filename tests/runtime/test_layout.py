"""The default layout: who computes what, and the thread count fixed at start."""

from __future__ import annotations

from fslsage_ray.config import load_config
from fslsage_ray.runtime.layout import explain_layout
from fslsage_ray.runtime.ray_backend import server_share
from fslsage_ray.simulation import resolve_at_start
from fslsage_ray.tasks.base import add_sums, batch_ranges


def test_threads_come_from_the_actor_cpu_share_and_are_fixed_in_the_config():
    assert resolve_at_start(load_config(None, [])).runtime.torch_threads == 1
    four = resolve_at_start(load_config(None, ["runtime.actor_num_cpus=4.5"]))
    assert four.runtime.torch_threads == 4
    assert (
        resolve_at_start(load_config(None, ["runtime.actor_num_cpus=0.25"])).runtime.torch_threads
        == 1
    )
    kept = resolve_at_start(load_config(None, ["runtime.torch_threads=3"]))
    assert kept.runtime.torch_threads == 3


def test_the_server_takes_an_equal_share_of_jobs_from_the_busiest_actors():
    assert server_share([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]) == [4, 8, 9]
    assert server_share([[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]) == [3, 9]
    assert server_share([[0], [1]]) == []  # fewer jobs than workers: the actors keep theirs
    assert server_share([list(range(10))]) == [5, 6, 7, 8, 9]


def test_batch_terms_add_up_in_batch_order():
    assert batch_ranges(5, 2) == [(0, 2), (2, 4), (4, 5)]
    parts = [
        {"loss_sum": 0.1, "correct": 1},
        {"loss_sum": 0.2, "correct": 2},
        {"loss_sum": 0.3, "correct": 0},
    ]
    total = add_sums(parts)
    assert total == {"loss_sum": (0.1 + 0.2) + 0.3, "correct": 3}
    assert isinstance(total["correct"], int)


def test_info_explains_a_server_without_cpus_and_one_with():
    shared = explain_layout(load_config(None, []).runtime, {})
    assert any("reserves no CPU" in line for line in shared)
    assert not any("share on the server" in line for line in shared)
    own = explain_layout(load_config(None, ["runtime.server_num_cpus=1"]).runtime, {"CPU": 1.0})
    assert any("an equal share on the server actor" in line for line in own)


def test_info_says_fedavg_starts_no_server_actor():
    runtime = load_config(None, ["algorithm.name=fedavg"]).runtime
    lines = explain_layout(runtime, {}, uses_server=False)
    server = next(line for line in lines if line.startswith("server:"))
    assert "no server actor" in server
    assert not any("server actor" in line for line in lines if not line.startswith("server:"))
