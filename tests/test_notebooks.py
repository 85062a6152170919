"""The example notebooks as users run them: executed cell by cell by a real Jupyter kernel
(nbclient and ipykernel), failing on any error or any stderr output; and Jupyter's stop button
(SIGINT) during a run.

To stay within CI's time, the notebooks share one kernel, as one would run them one after
another in a Jupyter session: the quick start runs first in the fresh kernel (so Ray's start-up
shows there, and must be silent), the others after a `%reset -f` (an empty namespace: a missing
import fails), on the Ray the first one started, which the kernel keeps.
"""

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


class Session:
    """One kernel working in `cwd`, as Jupyter starts it (this interpreter's ipykernel)."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(cwd), env={**os.environ, "FSLSAGE_E2E_DIR": str(E2E)})
        self.kc = None
        self.fresh = True

    def client(self):
        """Our own client, made after nbclient's last run (an older one gets no replies)."""
        if self.kc is None:
            self.kc = self.km.client()
            self.kc.start_channels()
            self.kc.wait_for_ready(timeout=120)
        return self.kc

    def _drop_client(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None

    def notebook(self, name: str):
        """Every cell in order, as "Run all" does; any error fails with its traceback."""
        nb = nbformat.read(EXAMPLES / name, as_version=4)
        assert not outputs(nb), f"{name} is committed with outputs; clear them"
        if not self.fresh:
            self.run("%reset -f")
        self.fresh = False
        self._drop_client()
        nbclient.NotebookClient(
            nb, km=self.km, timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(self.cwd)}}
        ).execute()
        return nb

    def reply(self, msg_id: str, timeout: float) -> dict | None:
        """The execute reply to `msg_id`, or None when none came within `timeout`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self.client().get_shell_msg(timeout=left)
            except Exception:  # queue.Empty: nothing within the time left
                return None
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg["content"]
        return None

    def run(self, code: str) -> None:
        reply = self.reply(self.client().execute(code), CELL_TIMEOUT_S)
        assert reply is not None, f"no reply within {CELL_TIMEOUT_S}s to {code!r}"
        assert reply["status"] == "ok", "\n".join(reply.get("traceback", []))

    def close(self) -> None:
        self._drop_client()
        self.km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    kernel = Session(tmp_path_factory.mktemp("notebooks"))
    try:
        yield kernel
    finally:
        kernel.close()


def test_quickstart_shows_bar_table_and_figure_on_ray(session):
    nb = session.notebook("quickstart.ipynb")
    assert stderr_text(nb) == ""  # no Ray start-up noise, no warnings
    assert len(with_data(nb, WIDGET)) == 1, "tqdm's notebook bar"
    assert any("<table" in html for html in with_data(nb, "text/html"))
    assert len(with_data(nb, "image/png")) == 1
    runs = session.cwd / "runs"
    assert (runs / "notebook-accuracy.png").stat().st_size > 0
    log = (runs / "notebook-fsl_sage" / "run.log").read_text()
    assert "INFO backend: ray: " in log
    assert float(re.findall(r"round \d+ acc ([0-9.]+)", log)[-1]) > 0.8


# Notebook -> (progress bars, inline figures) its outputs must hold.
OTHERS = {
    "compare_methods.ipynb": (3, 2),
    "scaling_clients.ipynb": (3, 3),
    "gpt2_e2e.ipynb": (1, 1),
    "probes.ipynb": (1, 1),  # the probe columns, and originals above reconstructions
}


@pytest.mark.parametrize("name", list(OTHERS))
def test_notebook_runs_in_a_kernel(name, session):
    if name == "gpt2_e2e.ipynb":
        pytest.importorskip("transformers", reason="the GPT-2 notebook needs the lm extra")
        if not E2E.is_dir():
            pytest.skip(f"real data folder {E2E} is absent (see ../shared/data/README.md)")
    if name == "probes.ipynb":
        pytest.importorskip("torchmetrics", reason="the probes notebook needs the probes extra")
    nb = session.notebook(name)
    bars, figures = OTHERS[name]
    assert stderr_text(nb) == ""
    assert len(with_data(nb, WIDGET)) == bars
    assert any("<table" in html for html in with_data(nb, "text/html"))
    assert len(with_data(nb, "image/png")) == figures


def test_stop_button_ends_the_run_and_keeps_the_kernel(session):
    """SIGINT to the kernel, as the stop button sends it, mid-run: the cell fails within
    seconds, the run's actors end, and a second run in the same kernel (same Ray) works."""
    setup = (
        "from dataclasses import replace\n"
        "from fslsage_ray.config import load_config, quickstart_path\n"
        "from fslsage_ray.simulation import Simulation\n"
        "config = load_config(quickstart_path(), ['alignment.every=1000'])\n"
    )
    session.run("%reset -f\n" + setup)
    metrics = session.cwd / "runs" / "stopped" / "metrics.parquet"
    msg_id = session.client().execute(
        "long = replace(config, run=replace(config.run, rounds=1000))\n"
        "Simulation(long, run_dir='runs/stopped', overwrite=True).run()"
    )
    deadline = time.monotonic() + CELL_TIMEOUT_S
    while not metrics.exists():  # a round is done: the actors are up and training
        early = session.reply(msg_id, timeout=0.2)
        assert early is None, "\n".join(early.get("traceback", [str(early)]))
        assert time.monotonic() < deadline, "the long run never finished a round"
    session.km.interrupt_kernel()
    sent = time.monotonic()
    reply = session.reply(msg_id, timeout=60)
    took = time.monotonic() - sent
    assert reply is not None and reply["status"] == "error", reply
    assert reply["ename"] == "RunInterrupted"
    assert reply["evalue"].startswith("stopped by SIGINT in round ")
    assert reply["evalue"].endswith("start it again with overwrite=True")  # Python's words
    print(f"the stop took {took:.1f}s")
    assert took < 10, f"the stop took {took:.1f}s"
    # The run's actors are gone, Ray itself is kept; then a second run works.
    session.run(
        "import ray, time\n"
        "from ray._private.state import actors\n"
        "assert ray.is_initialized()\n"
        "for _ in range(50):\n"
        "    alive = [a for a in actors().values() if a['State'] != 'DEAD']\n"
        "    if not alive: break\n"
        "    time.sleep(0.1)\n"
        "assert not alive, alive"
    )
    session.run(
        "short = replace(config, run=replace(config.run, rounds=1))\n"
        "again = Simulation(short, run_dir='runs/again', overwrite=True).run()\n"
        "assert again.num_rows == 1 and again.column('test_acc')[0].as_py() > 0.3"
    )
