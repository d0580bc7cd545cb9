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
import os
import signal
import sys
from typing import Any

import sdnotify
import structlog

from harbord import daemon_lock
from harbord.config import Config, WatchConfig
from harbord.events import EventSink, NullSink
from harbord.runtime import Runtime, open_runtime
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


async def _watchdog(notifier: sdnotify.SystemdNotifier, interval: float) -> None:
    """Ping systemd from the event loop: a blocked loop misses pings and gets restarted."""
    while True:
        notifier.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


class Daemon:
    """Wires watcher, runner, workers and publisher around one :class:`Runtime`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop_event = asyncio.Event()
        self.lock = daemon_lock.hold(config.paths.state)  # one daemon per state folder
        self.rt: Runtime = open_runtime(config)
        self.sink: EventSink = NullSink()
        self.publisher: Any = None
        if config.mqtt.enabled:
            from harbord.mqtt import Publisher

            self.publisher = Publisher(config.mqtt, self.rt.ctx.db, self.state)
            self.sink = self.publisher
        self.runner = Runner(
            self.rt.queue, self.rt.handlers, self.sink,
            watch_roots=self.rt.watch_roots(), on_change=self._changed,
        )
        self.watcher = Watcher(
            config.watches(), self._submit,
            settle_seconds=config.pipeline.settle_seconds,
            exclude=[config.paths.library, config.paths.state],
            seen=self._seen,
        )

    def state(self) -> dict[str, Any]:
        """The retained state snapshot (see README, ``<base>/state``)."""
        return self.rt.snapshot(active=len(self.runner.active))

    def _changed(self) -> None:
        if self.publisher is not None:
            self.publisher.state_changed()

    def _seen(self, path: str, size: int, mtime: float) -> bool:
        return self.rt.catalog.file_seen(path, size, mtime) or self.rt.queue.known(path, size, mtime)

    def _submit(self, path: str, size: int, mtime: float, watch: WatchConfig) -> None:
        self.runner.submit(path, size, mtime, source=watch.kind, watch_root=str(watch.path),
                           action=watch.action)

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (or :attr:`stop_event`); returns the exit code (0)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        loop.add_signal_handler(signal.SIGUSR1, self.runner.wake.set)  # `harbord ingest` queued jobs
        recovered = self.rt.queue.recover()
        notifier = sdnotify.SystemdNotifier()
        tasks: list[asyncio.Task[Any]] = []
        try:
            if self.publisher is not None:
                await self.publisher.start()
            await self.watcher.start()
            for index in range(self.config.pipeline.workers):
                tasks.append(asyncio.create_task(self.runner.work(self.stop_event), name=f"worker-{index}"))
            interval = watchdog_interval()
            if interval:
                tasks.append(asyncio.create_task(_watchdog(notifier, interval), name="watchdog"))
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
            log.info("stopping", active=len(self.runner.active))
            await self.watcher.stop()
            await self._stop_workers(tasks)
            if self.publisher is not None:
                await self.publisher.stop()
            await self.rt.aclose()
            log.info("stopped")
            self.lock.close()
        return 0

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
