"""Elastic pool on a REAL two-node Ray cluster (127.0.0.1): a node joins, later leaves.

The scenario runs in its own process (it needs its own Ray cluster); see
elastic_scenario.py for the timeline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.slow
@pytest.mark.ray
def test_pool_grows_when_a_node_joins_and_recovers_when_it_leaves(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env |= {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    proc = subprocess.run(
        [sys.executable, str(HERE / "elastic_scenario.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=HERE,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    actors = [int(e.split()[2]) for e in result["events"]]
    assert actors[:2] == [1, 1]  # head only: one slot
    assert 3 in actors  # the joined node's two slots were used
    assert actors[-1] == 1  # back to the head after the node left
    assert result["rounds_done"].count(3) == 2  # the round lost with the node was redone
    assert result["same"] == "yes"  # and the metrics equal an undisturbed in-process run
    log = (tmp_path / "elastic" / "run.log").read_text()
    assert "worker pool resized" in log and "workers replaced" in log
