"""Workers: claim jobs from the durable table, run the chain, record the outcome, emit events.

Used by the daemon (``harbord run``) and by ``harbord ingest`` in the foreground, so both go
through exactly the same path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from harbord.chain import Handler, run_chain
from harbord.errors import FileReplacedError, HandlerError, PermanentError, RetryableError, Skip
from harbord.events import EventSink, make_event
from harbord.fsio import inside, real_roots
from harbord.job import Action, Job, JobSource
from harbord.queue import Claimed, JobQueue
from harbord.txn import ready

log = structlog.get_logger("harbord.worker")

IDLE_POLL_SECONDS = 5.0
"""Longest a worker sleeps without a wake-up, so jobs queued by another process (``harbord
retry``) are picked up."""


def admission_error(job: Job, watch_roots: Sequence[Path]) -> str | None:
    """Core checks before any handler runs; returns a reason to refuse the file, or None.

    A symlink is followed only when its target lies inside a watched folder.
    """
    if os.path.islink(job.path):
        target = os.path.realpath(job.path)
        if not inside(target, real_roots(watch_roots)):
            return f"symlink points outside the watched folders (to {target})"
    return None


class Runner:
    """Runs jobs through ``handlers``; the single place where job states change after claim.

    ``on_change`` is called after every transition (the MQTT state snapshot is debounced there).
    """

    def __init__(
        self,
        queue: JobQueue,
        handlers: Sequence[Handler],
        sink: EventSink,
        *,
        watch_roots: Sequence[Path] = (),
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.queue = queue
        self.handlers = list(handlers)
        self.sink = sink
        self.watch_roots = list(watch_roots)
        self.on_change = on_change
        self.active = 0
        """How many jobs are running now."""
        self.wake = asyncio.Event()

    def submit(
        self,
        path: str,
        size: int,
        mtime: float,
        *,
        source: JobSource = "inbox",
        watch_root: str | None = None,
        action: Action = "move",
    ) -> tuple[str, bool]:
        """Enqueue a settled file (size in bytes, mtime in seconds); emits ``queued`` when new.

        Returns ``(job_id, created)`` as :meth:`JobQueue.enqueue`. Raises
        :class:`harbord.groupdb.DatabaseBusy` while another process holds the write lock (the
        watcher keeps the file and offers it again).
        """
        job_id, created = self.queue.enqueue(
            path, size, mtime, source=source, watch_root=watch_root, action=action
        )
        if created:
            log.info("queued", job_id=job_id, path=path, size=size)
            self.sink.emit(make_event("queued", job_id, path, size=size, source=source))
            self.on_change()
        self.wake.set()
        return job_id, created

    async def run_claimed(self, claimed: Claimed) -> str:
        """Run one claimed job to its end; returns the final outcome
        (ingested, duplicate, ignored, failed, dead). Cancellation parks the job (pending).

        The last stage's progress and the ``ingested`` outcome are written in one UPDATE
        (:meth:`JobQueue.finish` with ``stage``), before that stage's event, as every other
        stage's :meth:`JobQueue.advance` is.
        """
        job = claimed.job
        last = len(self.handlers)
        finished = False
        self.active += 1
        structlog.contextvars.bind_contextvars(job_id=claimed.job_id)
        self.on_change()

        async def on_stage(index: int, new: Job) -> None:
            nonlocal finished
            await ready(self.queue.db)
            if index == last:
                self.queue.finish(claimed.job_id, "ingested", new, stage=index)
                finished = True
            else:
                self.queue.advance(claimed.job_id, index, new)
            stage = self.handlers[index - 1].name
            log.debug("stage done", stage=stage, path=new.path)
            self.sink.emit(make_event("stage", claimed.job_id, new.path, item_id=new.item_id, stage=stage))

        try:
            reason = admission_error(job, self.watch_roots)
            if reason:
                raise PermanentError(reason, handler="admit", job_id=claimed.job_id, path=job.path)
            job = await run_chain(self.handlers, job, start=claimed.stage, on_stage=on_stage)
        except Skip as skip:
            await ready(self.queue.db)
            return self._skipped(claimed, skip.job or job, skip)
        except HandlerError as err:
            await ready(self.queue.db)
            return self._failed(claimed, err)
        except asyncio.CancelledError:
            with contextlib.suppress(sqlite3.Error):  # else recover() puts it back at start
                self.queue.release(claimed.job_id)
            log.info("parked", path=job.path, stage=claimed.stage)
            raise
        finally:
            self.active -= 1
            structlog.contextvars.unbind_contextvars("job_id")
            self.on_change()
        if not finished:  # nothing left to run (resumed after its last stage)
            await ready(self.queue.db)
            self.queue.finish(claimed.job_id, "ingested", job)
        log.info("ingested", job_id=claimed.job_id, path=job.path, item_id=job.item_id,
                 media_type=job.media_type, title=job.parsed.get("title"), object=job.object_path)
        known: dict[str, Any] = job.enrichment if job.enrichment.get("status") == "done" else {}
        artwork: dict[str, Any] = known["artwork"] if isinstance(known.get("artwork"), dict) else {}
        self.sink.emit(make_event("ingested", claimed.job_id, job.path, item_id=job.item_id,
                                  media_type=job.media_type,
                                  title=known.get("title") or job.parsed.get("title"),
                                  year=known.get("year") or job.parsed.get("year"),
                                  poster=artwork.get("poster") or job.sidecars.get("cover"),
                                  file_hash=job.file_hash))
        return "ingested"

    def _skipped(self, claimed: Claimed, job: Job, skip: Skip) -> str:
        self.queue.finish(claimed.job_id, skip.outcome, job)
        log.info(skip.outcome, path=job.path, reason=skip.reason, item_id=job.item_id)
        if skip.outcome == "duplicate":
            self.sink.emit(make_event("duplicate", claimed.job_id, job.path, item_id=job.item_id,
                                      file_hash=job.file_hash, reason=skip.reason))
        return skip.outcome

    def _failed(self, claimed: Claimed, err: HandlerError) -> str:
        retryable = isinstance(err, RetryableError)
        restart = None
        if isinstance(err, FileReplacedError):
            first = claimed.job
            restart = Job(id=first.id, path=first.path, source=first.source,
                          watch_root=first.watch_root, size=first.size, mtime=first.mtime,
                          action=first.action)
        state = self.queue.fail(claimed.job_id, str(err), retryable=retryable, restart=restart)
        row = self.queue.get(claimed.job_id) or {}
        log.warning("failed", path=claimed.job.path, error=str(err), stage=err.handler,
                    retryable=retryable, state=state, attempts=row.get("attempts"))
        self.sink.emit(make_event("failed", claimed.job_id, claimed.job.path, stage=err.handler,
                                  error=str(err), retryable=retryable, attempts=row.get("attempts"),
                                  next_attempt_at=row.get("next_attempt_at")))
        if state == "dead":
            self.sink.emit(make_event("dead", claimed.job_id, claimed.job.path, stage=err.handler,
                                      error=str(err), attempts=row.get("attempts")))
            return "dead"
        return "failed"

    async def work(self, stop: asyncio.Event, only: set[str] | None = None, *, drain: bool = False) -> None:
        """Worker loop: claim and run jobs until ``stop`` is set.

        ``only`` restricts to these job ids; with ``drain=True`` the loop returns as soon as no
        job is claimable (``harbord ingest``) instead of waiting for more. A busy database is
        waited for (:func:`harbord.groupdb.ready`); any other error outside a job is logged and
        the loop goes on after a pause, so a worker never ends on an exception.
        """
        while not stop.is_set():
            self.wake.clear()
            try:
                await ready(self.queue.db)
                claimed = self.queue.claim(only)
                due = self.queue.next_due() if claimed is None and not drain else None
            except asyncio.CancelledError:
                raise
            except Exception as err:  # busy beyond ready(), a damaged page ...: log, pause, go on
                log.error("worker cannot claim", error=str(err), retry_in_s=IDLE_POLL_SECONDS)
                await self._pause(stop, IDLE_POLL_SECONDS)
                continue
            if claimed is None:
                if drain:
                    return
                wait = IDLE_POLL_SECONDS if due is None else min(IDLE_POLL_SECONDS, due + 0.05)
                await self._pause(stop, wait)
                continue
            try:
                await self.run_claimed(claimed)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in the core must not kill the worker
                log.exception("worker error", job_id=claimed.job_id)
                with contextlib.suppress(Exception):
                    await ready(self.queue.db)
                    self.queue.fail(claimed.job_id, "internal error (see log)", retryable=False)

    async def _pause(self, stop: asyncio.Event, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, or until woken or stopped."""
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
