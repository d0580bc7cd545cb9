"""Waiting for the database's group transaction from any step, without importing it.

Steps (some of them loaded in the CPU pool, where sqlite-utils is kept out) call these with
the database they were given; with a :class:`harbord.groupdb.GroupDatabase` they wait for the
write lock or the commit, with a plain connection (tests, tools) they do nothing.
"""

from __future__ import annotations

import sqlite3
from typing import Any


def is_busy(err: BaseException) -> bool:
    """True for SQLite's busy/locked errors (``SQLITE_BUSY``, ``SQLITE_LOCKED``, and
    :class:`harbord.groupdb.DatabaseBusy`): another process holds the lock; retryable."""
    text = str(err).lower()
    return isinstance(err, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


async def ready(db: Any) -> None:
    """Wait until ``db`` can take writes now (its group transaction is open); see
    :meth:`harbord.groupdb.GroupDatabase.ready`."""
    wait = getattr(db, "ready", None)
    if wait is not None:
        await wait()


async def flush(db: Any) -> None:
    """Wait until what was written to ``db`` so far is committed; see
    :meth:`harbord.groupdb.GroupDatabase.flush`."""
    wait = getattr(db, "flush", None)
    if wait is not None:
        await wait()
