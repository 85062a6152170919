"""The example notebook's code runs as written (cells in order, one namespace)."""

from __future__ import annotations

import json
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_example_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its run folders go here
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    namespace: dict = {}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), str(NOTEBOOK), "exec"), namespace)
    assert namespace["table"].num_rows == 5
    assert namespace["table"].column("test_acc").to_pylist()[-1] > 0.8
    assert Path(namespace["path"]).stat().st_size > 0
