"""What the daemon hands to handlers: config, catalog and shared, lazily built resources.

The core never names a handler's dependencies; a handler's ``from_context`` asks for what it
needs with :meth:`Context.shared`, and the context closes those resources at shutdown.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlite_utils import Database

from harbord.catalog import Catalog
from harbord.config import Config
from harbord.events import EventSink, NullSink
from harbord.queue import JobQueue

T = TypeVar("T")


@dataclass
class Context:
    """The one dependency container of a run: config, database, catalog, job table and shared
    resources; handed to every handler's ``from_context``, owned (and closed) by the daemon or
    the ``ingest`` command."""

    config: Config
    db: Database
    catalog: Catalog
    queue: JobQueue = None  # type: ignore[assignment]  # built in __post_init__ when not given
    """The durable job table on ``db``, with the ``[pipeline]`` retry settings."""
    events: EventSink = field(default_factory=NullSink)
    """Where events go: the daemon sets its fan-out sink (MQTT outbox, subscribers) here, so a
    capability's background work can announce what it finished (e.g. ``enriched``)."""
    _resources: dict[str, Any] = field(default_factory=dict)
    _closers: list[Callable[[], Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.queue is None:
            self.queue = JobQueue.for_config(self.db, self.config.pipeline)

    def watch_roots(self) -> list[Path]:
        """The watched folders."""
        return [w.path for w in self.config.watches()]

    def shared(self, key: str, factory: Callable[[], T], close: Callable[[T], Any] | None = None) -> T:
        """Return the resource stored under ``key``, building it with ``factory`` the first time.

        ``close(resource)`` (sync or async) is called by :meth:`aclose` at shutdown.
        """
        if key not in self._resources:
            resource = factory()
            self._resources[key] = resource
            if close is not None:
                self._closers.append(lambda: close(resource))
        return self._resources[key]  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close every shared resource, newest first."""
        while self._closers:
            result = self._closers.pop()()
            if inspect.isawaitable(result):
                await result
        self._resources.clear()
