"""Errors of a run that the command line reports in one line; torch-free, so the CLI can
name them without importing the simulator (`fslsage-ray --help` starts in well under 1 s)."""

from __future__ import annotations


class RunStopped(RuntimeError):
    """The run cannot go on here; its folder holds a checkpoint to resume from."""


class RunInterrupted(RunStopped):
    """Stopped by a signal; `exit_code` is the shell's 128 + signal number."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
