"""One daemon per state folder: ``<state>/daemon.lock``.

The daemon holds an exclusive ``flock`` on the file for its whole life and writes its pid in
it; the kernel drops the lock when the process ends, however it ends (kill -9 included), so a
stale file never blocks a restart. ``harbord ingest`` looks here to find a running daemon and
hand its files over instead of running the chain beside it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO

from harbord.config import make_folder
from harbord.errors import ConfigError, HarbordError
from harbord.fsio import lock_fd, unlock

LOCK_NAME = "daemon.lock"


def hold(state: Path) -> IO[bytes]:
    """Take the daemon lock of ``state`` and write this process's pid in it; keep the returned
    file open for as long as the daemon runs. Raises HarbordError naming the other daemon's
    pid if one holds it, ConfigError naming ``paths.state`` with the OS's reason if the folder
    or the file cannot be created (``state = "/proc/harbord"``, a read-only file system)."""
    make_folder(state, "paths.state")
    try:
        handle = open(state / LOCK_NAME, "a+b")  # noqa: SIM115 - held for the daemon's life
    except OSError as err:
        raise ConfigError(f"cannot create {state / LOCK_NAME}: {err.strerror or err}",
                          key="paths.state") from err
    if not lock_fd(handle.fileno(), blocking=False):
        handle.seek(0)
        other = handle.read().decode(errors="replace").strip()
        handle.close()
        raise HarbordError(f"another harbord daemon (pid {other or '?'}) runs on {state}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n".encode())
    handle.flush()
    return handle


def running_pid(state: Path) -> int | None:
    """The pid of the daemon running on ``state``; 0 if one runs but its pid is not written
    yet; None if none runs."""
    path = state / LOCK_NAME
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError:
        return None
    with handle:
        if not lock_fd(handle.fileno(), shared=True, blocking=False):
            with contextlib.suppress(ValueError):
                return int(handle.read().decode(errors="replace").strip() or 0)
            return 0
        unlock(handle.fileno())
        return None
