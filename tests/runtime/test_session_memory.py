"""The study's memory samplers: one zero-CPU actor per host sums USS over the Ray session's
processes (driver, GCS, raylet, workers), leaving the sampler itself out."""

from __future__ import annotations

import os

import pytest

from fslsage_ray.runtime.session_memory import SessionMemory, process_memory


@pytest.mark.ray
def test_one_sampler_per_host_sees_the_whole_session(ray_local):
    ray = ray_local

    @ray.remote(num_cpus=1)
    class Ballast:
        """A worker holding 200 MiB of its own pages: the session's total must see it."""

        def __init__(self) -> None:
            self.block = bytearray(b"\x01") * (200 * 2**20)  # written: resident

        def pid(self) -> int:
            return os.getpid()

    memory = SessionMemory(with_ray=True, every=0.2)
    try:
        assert len(memory.actors) == 1  # one host, however many nodes it runs
        before = memory.take()
        ballast = Ballast.remote()
        ray.get(ballast.pid.remote())
        after = memory.take()
        driver = process_memory([os.getpid()])[0].uss
        assert before.processes >= 3 and before.uss > driver  # GCS, raylet, driver at least
        assert after.uss - before.uss > 150 * 2**20  # the ballast's pages, not double-counted
        assert after.uss_complete and after.samples >= 1
        ray.kill(ballast)
    finally:
        memory.close()
