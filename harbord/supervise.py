"""Supervised background tasks: a task that ends on an exception is logged and restarted.

The daemon's long-lived tasks (workers, the settle loop's owner, the MQTT publisher, the job
re-check) run under one :class:`Supervisor`. A crash is logged with its traceback and the task
restarted after a backoff (0.5 s doubling to 30 s). A task that crashed :data:`GIVE_UP_CRASHES`
times without running :data:`HEALTHY_SECONDS` in between is given up: the supervisor is then
unhealthy, and the systemd watchdog ping stops (systemd restarts the daemon), as it does while
any task waits to be restarted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger("harbord.supervise")

GIVE_UP_CRASHES = 5
HEALTHY_SECONDS = 60.0
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0


class Supervisor:
    """Starts and restarts named tasks; :meth:`healthy` says whether all of them run."""

    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.down: set[str] = set()
        """Tasks that crashed and are waiting for their restart, or were given up."""
        self.given_up: set[str] = set()
        self.crashes: dict[str, int] = {}

    def start(self, name: str, factory: Callable[[], Awaitable[Any]]) -> asyncio.Task[None]:
        """Run ``factory()`` as task ``name``, restarting it whenever it raises. A normal return
        ends it (a worker told to stop)."""
        task = asyncio.create_task(self._run(name, factory), name=name)
        self.tasks[name] = task
        return task

    async def _run(self, name: str, factory: Callable[[], Awaitable[Any]]) -> None:
        delay = BACKOFF_MIN
        crashes = 0
        while True:
            started = time.monotonic()
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                if time.monotonic() - started >= HEALTHY_SECONDS:
                    crashes, delay = 0, BACKOFF_MIN
                crashes += 1
                self.crashes[name] = self.crashes.get(name, 0) + 1
                self.down.add(name)
                if crashes >= GIVE_UP_CRASHES:
                    log.exception("task crashed too often; given up", task=name, crashes=crashes)
                    self.given_up.add(name)
                    return
                log.exception("task crashed; restarting", task=name, restart_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(BACKOFF_MAX, delay * 2)
                self.down.discard(name)

    def healthy(self) -> bool:
        """True while every supervised task runs (none crashed and waiting, none given up)."""
        return not self.down
