"""The example notebooks as users run them: each executed by a real Jupyter kernel (nbclient
and ipykernel), failing on any error; and Jupyter's stop button (SIGINT) during a run."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient", reason="the notebook tests need the dev extra")
nbformat = pytest.importorskip("nbformat", reason="the notebook tests need the dev extra")
pytest.importorskip("ipykernel", reason="the notebook tests need the dev extra")
from jupyter_client.manager import KernelManager  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
E2E = Path(os.environ.get("FSLSAGE_E2E_DIR", Path(__file__).parents[2] / "shared/data/e2e"))
CELL_TIMEOUT_S = 300
WIDGET = "application/vnd.jupyter.widget-view+json"

pytestmark = pytest.mark.ray


def outputs(nb) -> list:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def stderr_text(nb) -> str:
    return "".join(o.text for o in outputs(nb) if o.output_type == "stream" and o.name == "stderr")


def with_data(nb, mime: str) -> list[str]:
    return [o.data[mime] for o in outputs(nb) if mime in o.get("data", {})]


def start_kernel(cwd: Path) -> KernelManager:
    """A python3 kernel (this interpreter's ipykernel) working in `cwd`, as Jupyter starts one."""
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(cwd))
    return km


def execute(name: str, km: KernelManager, cwd: Path):
    """Every cell in order, as "Run all" does; any error fails the test with its traceback."""
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    assert not outputs(nb), f"{name} is committed with outputs; clear them"
    client = nbclient.NotebookClient(
        nb, km=km, timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """The quick start executed in a kernel that stays up for the stop-button test."""
    cwd = tmp_path_factory.mktemp("quickstart")
    km = start_kernel(cwd)
    try:
        yield execute("quickstart.ipynb", km, cwd), km, cwd
    finally:
        km.shutdown_kernel(now=True)


def test_quickstart_shows_bar_table_and_figure_on_ray(quickstart):
    nb, _, cwd = quickstart
    assert stderr_text(nb) == ""  # no Ray start-up noise, no warnings
    bars = with_data(nb, WIDGET)
    assert len(bars) == 2, "one notebook progress bar per run"
    assert any("<table" in html for html in with_data(nb, "text/html"))
    assert len(with_data(nb, "image/png")) == 1
    assert (cwd / "runs" / "notebook-accuracy.png").stat().st_size > 0
    printed = "".join(o.text for o in outputs(nb) if o.output_type == "stream")
    accuracy = float(re.search(r"FSL-SAGE: accuracy ([0-9.]+)", printed).group(1))
    assert accuracy > 0.8
    assert "ray: " in (cwd / "runs" / "notebook-fsl_sage" / "run.log").read_text()


# Notebook -> (progress bars, inline figures) its outputs must hold.
OTHERS = {
    "compare_methods.ipynb": (3, 2),
    "scaling_clients.ipynb": (3, 1),
    "gpt2_e2e.ipynb": (1, 1),
}


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_notebook_runs_in_a_kernel(name, tmp_path, monkeypatch):
    if name == "gpt2_e2e.ipynb":
        pytest.importorskip("transformers", reason="the GPT-2 notebook needs the lm extra")
        if not E2E.is_dir():
            pytest.skip(f"real data folder {E2E} is absent (see ../shared/data/README.md)")
        monkeypatch.setenv("FSLSAGE_E2E_DIR", str(E2E))  # the kernel inherits it
    km = start_kernel(tmp_path)
    try:
        nb = execute(name, km, tmp_path)
    finally:
        km.shutdown_kernel(now=True)
    bars, figures = OTHERS[name]
    assert stderr_text(nb) == ""
    assert len(with_data(nb, WIDGET)) == bars
    assert any("<table" in html for html in with_data(nb, "text/html"))
    assert len(with_data(nb, "image/png")) == figures


def _reply(kc, msg_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg["content"]


def _run(kc, code: str, timeout: float = CELL_TIMEOUT_S) -> dict:
    reply = _reply(kc, kc.execute(code), timeout)
    assert reply["status"] == "ok", "\n".join(reply.get("traceback", []))
    return reply


def test_stop_button_ends_the_run_and_keeps_the_kernel(quickstart):
    """SIGINT to the kernel, as the stop button sends it, mid-run: the cell fails within
    seconds, the run's actors end, and a second run in the same kernel (same Ray) works."""
    _, km, cwd = quickstart
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        metrics = cwd / "runs" / "stopped" / "metrics.parquet"
        msg_id = kc.execute(
            "long = replace(config, run=replace(config.run, rounds=1000))\n"
            "Simulation(long, run_dir='runs/stopped', overwrite=True).run()"
        )
        deadline = time.monotonic() + CELL_TIMEOUT_S
        while not metrics.exists():  # a round is done: the actors are up and training
            assert time.monotonic() < deadline, "the long run never finished a round"
            time.sleep(0.2)
        km.interrupt_kernel()
        sent = time.monotonic()
        reply = _reply(kc, msg_id, timeout=60)
        took = time.monotonic() - sent
        assert reply["status"] == "error" and reply["ename"] == "RunInterrupted"
        assert reply["evalue"].startswith("stopped by SIGINT in round ")
        assert reply["evalue"].endswith("start it again with overwrite=True")  # Python's words
        assert took < 10, f"the stop took {took:.1f}s"
        # The run's actors are gone, Ray itself is kept; then a second run works.
        _run(
            kc,
            "import ray, time\n"
            "from ray._private.state import actors\n"
            "assert ray.is_initialized()\n"
            "for _ in range(50):\n"
            "    alive = [a for a in actors().values() if a['State'] != 'DEAD']\n"
            "    if not alive: break\n"
            "    time.sleep(0.1)\n"
            "assert not alive, alive",
        )
        _run(
            kc,
            "short = replace(config, run=replace(config.run, rounds=1))\n"
            "again = Simulation(short, run_dir='runs/again', overwrite=True).run()\n"
            "assert again.num_rows == 1 and again.column('test_acc')[0].as_py() > 0.3",
        )
    finally:
        kc.stop_channels()
