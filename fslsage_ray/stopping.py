"""A clean stop on SIGTERM (`ray job stop`, a preempted node) and SIGINT (Ctrl-C).

While a run trains, both signals raise `Stop` in the main thread wherever it is, a blocking
ray.get included (Ray checks for signals while it waits, and turns the exception into a
KeyboardInterrupt, which `Stop` is a kind of). The previous handlers come back afterwards,
so a notebook's Ctrl-C or other code's handlers are untouched outside the run. Jupyter's stop
button sends the kernel SIGINT: the run ends with RunInterrupted and its actors are stopped,
while the kernel and its Ray stay up for the next run (tests/test_notebooks.py).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop(KeyboardInterrupt):
    """Raised by the handler: the current round is abandoned."""


class Stopper:
    """Which signal arrived first (None: none did)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:  # a second signal: let the first one's cleanup finish
            return
        self.signum = signum
        raise Stop(signal.Signals(signum).name)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum or signal.SIGINT).name

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + (self.signum or signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Stopper]:
    """Handlers for SIGINT and SIGTERM for the block's duration (main thread only: Python
    delivers signals there, and other threads may not install handlers)."""
    stopper = Stopper()
    if threading.current_thread() is not threading.main_thread():
        yield stopper
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, stopper._handle)
    try:
        yield stopper
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
