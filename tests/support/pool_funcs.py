"""Functions the CPU-pool tests run in worker processes (top-level, so they pickle by name)."""

from __future__ import annotations

import os
import signal
import time

WARMED_IN: list[int] = []
"""Pids of the processes that ran :func:`warm` (the fork server's, then the worker's own)."""


def pid() -> int:
    """The worker's pid."""
    return os.getpid()


def warmed_in() -> list[int]:
    """What :func:`warm` recorded in this worker (inherited from the fork server by fork)."""
    return list(WARMED_IN)


def warm() -> None:
    """A warm-up: records the pid of the process running it."""
    WARMED_IN.append(os.getpid())


def crash() -> None:
    """Die the way a crash in native code does: SIGSEGV, no Python clean-up."""
    os.kill(os.getpid(), signal.SIGSEGV)


def touch_then_sleep(flag: str, seconds: float) -> None:
    """Create the file ``flag`` (the test's sign that the call is running), then sleep."""
    with open(flag, "x"):
        pass
    time.sleep(seconds)
