"""The daemon: watcher -> durable job table -> workers -> catalog, with MQTT and systemd.

Start-up: open the runtime, put jobs left ``running`` by a crash back to ``pending``, connect
MQTT in the background (never waits for the broker), start watching (reconcile included),
start ``pipeline.workers`` workers, then tell systemd ``READY=1``. One daemon per state folder
(:mod:`harbord.daemon_lock`); SIGUSR1 wakes the workers (``harbord ingest`` queued jobs for
them). SIGTERM/SIGINT: stop
watching, give running stages ``SHUTDOWN_GRACE_SECONDS`` to finish, park the rest (they resume
at their stage on the next start), publish ``stopped``, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from typing import Any

import sdnotify
import structlog

from harbord import daemon_lock, queries
from harbord.capability import contributions
from harbord.config import Config, WatchConfig
from harbord.events import FanOut
from harbord.fsio import sweep_temps
from harbord.runtime import Runtime, open_runtime
from harbord.supervise import Supervisor
from harbord.txn import is_busy, ready
from harbord.watcher import Watcher
from harbord.worker import Runner

log = structlog.get_logger("harbord.daemon")

SHUTDOWN_GRACE_SECONDS = 10.0


def watchdog_interval() -> float | None:
    """Half of systemd's ``WatchdogSec`` (from ``$WATCHDOG_USEC``, microseconds), in seconds."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return None
    return int(usec) / 1e6 / 2


RECHECK_SECONDS = 30.0
"""How often the daemon looks again at jobs other processes left ``running``: a ``harbord
ingest`` killed meanwhile, or a killed daemon that was still a zombie (dead but not reaped,
0.3-1 s under systemd) when this one started."""


async def _watchdog(notifier: sdnotify.SystemdNotifier, interval: float, healthy: Callable[[], bool]) -> None:
    """Ping systemd from the event loop while ``healthy()``: a blocked loop misses pings, and
    so does a daemon whose supervised task is dead; systemd then restarts it."""
    quiet = False
    while True:
        if healthy():
            notifier.notify("WATCHDOG=1")
            quiet = False
        elif not quiet:
            log.error("a supervised task is down; the systemd watchdog ping stops")
            quiet = True
        await asyncio.sleep(interval)


class Daemon:
    """Wires watcher, runner, workers and publisher around one :class:`Runtime`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop_event = asyncio.Event()
        self.supervisor = Supervisor()
        self.exit_code = 0
        self.lock = daemon_lock.hold(config.paths.state)  # one daemon per state folder
        self.rt: Runtime = open_runtime(config)
        self.sink = FanOut()
        """Every event goes to the MQTT outbox and each capability's subscribers."""
        self.publisher: Any = None
        if config.mqtt.enabled:
            from harbord.mqtt import Publisher

            self.publisher = Publisher(config.mqtt, self.rt.ctx.db, self.state)
            self.sink.add(self.publisher)
        for subscriber in contributions("subscribers"):  # each: (Context) -> EventSink
            self.sink.add(subscriber(self.rt.ctx))
        self.rt.ctx.events = self.sink
        self.runner = Runner(
            self.rt.ctx.queue, self.rt.handlers, self.sink,
            watch_roots=self.rt.ctx.watch_roots(), on_change=self._changed,
        )
        self.watcher = Watcher(
            config.watches(), self._submit,
            settle_seconds=config.pipeline.settle_seconds,
            exclude=[config.paths.library, config.paths.state],
            seen=self._seen,
        )

    def state(self) -> dict[str, Any]:
        """The retained state snapshot (see README, ``<base>/state``)."""
        return queries.snapshot(self.rt.ctx.catalog, self.rt.ctx.queue, active=self.runner.active)

    def _changed(self) -> None:
        if self.publisher is not None:
            self.publisher.state_changed()

    def _seen(self, path: str, size: int, mtime: float) -> bool:
        return self.rt.ctx.catalog.file_seen(path, size, mtime) or self.rt.ctx.queue.known(path, size, mtime)

    def _submit(self, path: str, size: int, mtime: float, watch: WatchConfig) -> bool:
        """Queue a settled file; False while the database is busy (the watcher offers it again)."""
        try:
            self.runner.submit(path, size, mtime, source=watch.kind, watch_root=str(watch.path),
                               action=watch.action)
        except sqlite3.OperationalError as err:
            if not is_busy(err):
                raise
            log.warning("database busy; file queued later", path=path)
            return False
        return True

    def healthy(self) -> bool:
        """All supervised tasks run and the database commits (for the watchdog)."""
        db = self.rt.ctx.db
        return self.supervisor.healthy() and getattr(db, "broken", None) is None

    async def _recheck(self) -> None:
        """Every :data:`RECHECK_SECONDS`: put back jobs that processes now gone left running."""
        while not self.stop_event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), RECHECK_SECONDS)
            if self.stop_event.is_set():
                return
            await ready(self.rt.ctx.db)
            if count := self.rt.ctx.queue.recheck():
                log.info("jobs of processes that are gone put back", count=count)
                self.runner.wake.set()

    async def _watch_broken(self) -> None:
        """Stop the daemon (exit 1) once a COMMIT failed: what the workers believe is no longer
        what the job table holds; a restart resumes every job from what was committed."""
        db = self.rt.ctx.db
        while not self.stop_event.is_set():
            if getattr(db, "broken", None) is not None:
                log.error("database commit failed; stopping so a restart resumes from the catalog",
                          error=str(getattr(db, "broken", "")))
                self.exit_code = 1
                self.stop_event.set()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), 1.0)

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (or :attr:`stop_event`); returns the exit code (0; 1 after
        a failed database commit). At start: jobs of dead processes go back to pending, and
        temp files dead writers left in the library are removed (:func:`harbord.fsio.sweep_temps`)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        loop.add_signal_handler(signal.SIGUSR1, self.runner.wake.set)  # `harbord ingest` queued jobs
        recovered = self.rt.ctx.queue.recover()
        swept = sweep_temps(self.config.paths.library / "objects")
        if swept:
            log.info("temp files of dead writers removed", count=len(swept),
                     bytes=sum(p.stat().st_size for p in swept if p.exists()))
        notifier = sdnotify.SystemdNotifier()
        tasks: list[asyncio.Task[Any]] = []
        try:
            if self.publisher is not None:
                await self.publisher.start()
            await self.watcher.start()
            for index in range(self.config.pipeline.workers):
                tasks.append(self.supervisor.start(
                    f"worker-{index}", lambda: self.runner.work(self.stop_event)))
            tasks.append(self.supervisor.start("recheck", self._recheck))
            for task in contributions("tasks"):  # each: async (Context, stop) -> None
                tasks.append(self.supervisor.start(f"{task.__module__}.{task.__name__}",
                                                   functools.partial(task, self.rt.ctx, self.stop_event)))
            tasks.append(asyncio.create_task(self._watch_broken(), name="commit-watch"))
            interval = watchdog_interval()
            if interval:
                tasks.append(asyncio.create_task(_watchdog(notifier, interval, self.healthy),
                                                 name="watchdog"))
            inbox = ", ".join(str(w.path) for w in self.config.watches())
            library = self.config.paths.library
            print(f"harbord: watching {inbox}; library {library}", file=sys.stderr, flush=True)
            log.info("started", recovered=recovered, workers=self.config.pipeline.workers,
                     db=str(self.config.db_path))
            notifier.notify(f"READY=1\nSTATUS=watching {inbox}")
            self._changed()
            await self.stop_event.wait()
        finally:
            notifier.notify("STOPPING=1")
            log.info("stopping", active=self.runner.active)
            await self.watcher.stop()
            await self._stop_workers(tasks)
            if self.publisher is not None:
                await self.publisher.stop()
            await self.rt.aclose()
            log.info("stopped")
            self.lock.close()
        return self.exit_code

    async def _stop_workers(self, tasks: list[asyncio.Task[Any]]) -> None:
        self.stop_event.set()
        workers = [t for t in tasks if t.get_name().startswith("worker")]
        pending: set[asyncio.Task[Any]] = set()
        if workers:
            _, pending = await asyncio.wait(workers, timeout=SHUTDOWN_GRACE_SECONDS)
        for task in [*pending, *(t for t in tasks if t not in workers)]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_daemon(config: Config) -> int:
    """Build and run the daemon; returns the process exit code."""
    daemon = Daemon(config)
    return await daemon.run()
