"""The daemon's one SQLite writer: one connection, many jobs' writes per transaction.

:class:`GroupDatabase` is the sqlite-utils ``Database`` the daemon (and ``harbord ingest``) run
on. While an asyncio loop runs, the first write opens a transaction with ``BEGIN IMMEDIATE``
(the write lock is taken up front, so a read can never need upgrading to a write later: no
``SQLITE_BUSY_SNAPSHOT``, the spurious "database is locked" between connections), and every
write of every job until the commit joins it (nested ``atomic()`` blocks become savepoints);
the commit runs :data:`WINDOW_SECONDS` later as a loop callback (group commit). A job's stage
result is in that transaction before the stage's event is queued, and the event rows (the
MQTT outbox) are in the same transaction, so a crash loses both or neither; a step that is
about to do something it cannot undo (``move`` deleting the source) awaits :meth:`flush` first.

Busy: the connection waits at most :data:`BUSY_MS` for the lock, so the event loop never blocks
on another process's long transaction; async callers take the lock with :meth:`ready`, which
waits for it without blocking the loop (logging while it waits), and a sync write that meets a
busy database raises :class:`DatabaseBusy` for its caller to retry.

Measured here (2,000 files of 64 bytes through ``checksum + store``, ``harbord ingest``): 27
statements per job, each an implicit transaction before; with group commit one COMMIT serves
~30-60 jobs' statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Generator
from typing import Any

import structlog
from sqlite_utils import Database

from harbord.txn import is_busy

log = structlog.get_logger("harbord.db")

WINDOW_SECONDS = 0.002
"""How long a group transaction stays open for more jobs' writes before it commits."""
BUSY_MS = 50
"""``PRAGMA busy_timeout`` of the writer connection: the longest a statement blocks the loop."""
READY_BACKOFF_MAX = 1.0
"""Seconds: the longest :meth:`GroupDatabase.ready` sleeps between tries while another process
holds the write lock."""
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class DatabaseBusy(sqlite3.OperationalError):
    """Another process holds the database's write lock; try again later (retryable)."""


class GroupDatabase(Database):
    """A sqlite-utils Database whose writes are grouped into few transactions (see module doc).

    Use it from the event-loop thread only. Outside a running loop it behaves as a plain
    sqlite-utils Database (a statement outside ``atomic()`` commits on its own).
    ``statements``/``commits`` count writes and commits (for benchmarks and tests).
    """

    def __init__(self, conn: sqlite3.Connection, window: float = WINDOW_SECONDS) -> None:
        super().__init__(conn)
        self.window = window
        self.statements = 0
        self.commits = 0
        self.broken: BaseException | None = None
        """Set when a COMMIT failed (disk full, I/O error): the daemon stops, since the job
        table no longer holds what the workers believe (on restart each job resumes from what
        was committed; every step is idempotent)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._after: list[Callable[[], Any]] = []
        self._busy_since: float | None = None
        self._savepoints = 0
        conn.execute(f"PRAGMA busy_timeout = {BUSY_MS}")

    # transactions ------------------------------------------------------------------------
    def _running_loop(self) -> asyncio.AbstractEventLoop | None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    def _begin(self) -> bool:
        """Open the group transaction if a loop runs and none is open; True if one is open
        now. Raises DatabaseBusy if another process holds the write lock."""
        if self.conn.in_transaction:
            if self._timer is None and (running := self._running_loop()) is not None:
                # opened by someone else (sqlite3's implicit BEGIN): commit it with the group
                self._loop = running
                self._timer = running.call_later(self.window, self._commit)
            return True
        loop = self._running_loop()
        if loop is None:
            return False
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as err:
            if is_busy(err):
                raise DatabaseBusy(f"database is locked by another process ({err})") from err
            raise
        self._loop = loop
        self._timer = loop.call_later(self.window, self._commit)
        return True

    def execute(self, sql: str, parameters: Any = None) -> sqlite3.Cursor:
        """sqlite-utils ``execute``; a write joins (or opens) the group transaction."""
        if sql.lstrip()[:7].upper().startswith(_WRITES):
            self.statements += 1
            self._begin()
        return super().execute(sql, parameters)

    @contextlib.contextmanager
    def atomic(self) -> Generator[Database, None, None]:
        """sqlite-utils ``atomic``: a savepoint inside the group transaction (all or nothing
        for the block; committed with the group). Savepoints are named by a counter
        (sqlite-utils draws 16 random bytes from the OS for each, several per job)."""
        if not self._begin():
            with super().atomic() as db:
                yield db
            return
        self._savepoints += 1
        name = f"g{self._savepoints}"
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                self.conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        self.conn.execute(f"RELEASE SAVEPOINT {name}")

    async def ready(self) -> None:
        """Make sure the group transaction is open, waiting (without blocking the loop) while
        another process holds the write lock. Call it right before sync writes with no
        ``await`` between. Raises the COMMIT error if the database is :attr:`broken`."""
        delay = 0.02
        while True:
            if self.broken is not None:
                raise self.broken
            try:
                self._begin()
            except DatabaseBusy as err:
                if self._busy_since is None:
                    self._busy_since = time.monotonic()
                    log.warning("database busy; waiting", error=str(err))
                await asyncio.sleep(delay)
                delay = min(READY_BACKOFF_MAX, delay * 2)
                continue
            if self._busy_since is not None:
                log.info("database free again", waited_s=round(time.monotonic() - self._busy_since, 2))
                self._busy_since = None
            return

    def _commit(self) -> None:
        self._timer = None
        waiters, self._waiters = self._waiters, []
        after, self._after = self._after, []
        error: BaseException | None = None
        if self.conn.in_transaction:
            try:
                self.conn.execute("COMMIT")
                self.commits += 1
            except sqlite3.Error as err:
                error = err
                self.broken = err
                log.error("database commit failed; stopping", error=str(err))
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
        for waiter in waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)
        if error is None:
            for callback in after:
                try:
                    callback()
                except Exception:  # a callback's bug must not undo the commit's bookkeeping
                    log.exception("after-commit callback failed")

    async def flush(self) -> None:
        """Wait until everything written so far is committed. Raises the COMMIT error."""
        if self.broken is not None:
            raise self.broken
        if not self.conn.in_transaction or self._loop is None:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    def after_commit(self, callback: Callable[[], Any]) -> None:
        """Call ``callback`` once what was written so far is committed (now if nothing is open)."""
        if self.conn.in_transaction and self._loop is not None:
            self._after.append(callback)
        else:
            callback()

    def commit_now(self) -> None:
        """Commit the open group transaction at once (shutdown, end of ``harbord ingest``)."""
        if self._timer is not None:
            self._timer.cancel()
        self._commit()

    def close(self) -> None:
        """Commit what is open, then close the connection."""
        if self.conn.in_transaction:
            self.commit_now()
        super().close()


class ImmediateDatabase(Database):
    """A sqlite-utils Database whose ``atomic()`` starts with ``BEGIN IMMEDIATE``: for a
    connection besides the daemon's writer (the vector store's, used from threads), so a
    transaction that reads and then writes never has to upgrade its read (SQLite answers such
    an upgrade with ``SQLITE_BUSY_SNAPSHOT`` at once, without waiting, when another connection
    committed in between: the spurious "database is locked" at ``index``)."""

    @contextlib.contextmanager
    def atomic(self) -> Generator[Database, None, None]:
        """A transaction taking the write lock up front (a savepoint if one is open)."""
        if self.conn.in_transaction:
            with super().atomic() as db:
                yield db
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


def open_group_db(path: Any) -> GroupDatabase:
    """:func:`harbord.catalog.open_db` (create, migrate, WAL), as a :class:`GroupDatabase`."""
    from harbord.catalog import open_db

    plain = open_db(path)
    return GroupDatabase(plain.conn)
