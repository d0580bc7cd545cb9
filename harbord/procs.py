"""Processes as owners of work: a process token (pid + start time) and a liveness check.

The start time (clock ticks since boot, field 22 of ``/proc/PID/stat``, proc(5)) tells a reused
pid from the process that held it; the state (field 3) tells a zombie, a process killed but
not yet reaped by its parent (0.3-1 s after ``kill -9`` under systemd here), from a live one.
"""

from __future__ import annotations

import os


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields 3.. of ``/proc/PID/stat`` (after the parenthesised command name), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start_ticks(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, field 22 of /proc/PID/stat),
    or None if it is gone or /proc cannot tell."""
    fields = _stat_fields(pid)
    return fields[19].decode() if fields and len(fields) > 19 else None


def process_token() -> str:
    """This process as an owner: ``"<pid>:<start ticks>"``, or ``"<pid>"`` where /proc is not
    there."""
    pid = os.getpid()
    ticks = process_start_ticks(pid)
    return f"{pid}:{ticks}" if ticks else str(pid)


def process_alive(owner: str | int | None) -> bool:
    """True if ``owner`` (see :func:`process_token`) is a running process other than this one.

    None, this process's own pid (at start-up: a pid reused from a process that is gone), a
    pid now held by a process started later, and a zombie (state ``Z``/``X``: dead, not yet
    reaped) count as not alive.
    """
    if owner is None or owner == "":
        return False
    pid_text, _, ticks = str(owner).partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        pass
    fields = _stat_fields(pid)
    if fields is None:  # no /proc: kill(0) is all we know
        return True
    if fields[0] in (b"Z", b"X"):
        return False
    return not ticks or (len(fields) > 19 and fields[19].decode() == ticks)
