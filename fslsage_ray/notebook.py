"""What changes inside a Jupyter (IPython) kernel, where one process serves many runs.

A kernel keeps the private Ray it started for the next run (started once per kernel, like
a Ray session the user opened), tqdm draws its widget bar there (outputs/progress.py), and
a stop (the stop button's SIGINT) ends the run, never the process (stopping.py).
"""

from __future__ import annotations

import sys


def in_kernel() -> bool:
    """True inside a Jupyter kernel (tqdm's test: IPython with a kernel app configured)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # an IPython too old or too broken to ask
        return False
    return shell is not None and "IPKernelApp" in shell.config
