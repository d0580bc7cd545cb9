"""What the daemon hands to handlers: config, catalog and shared, lazily built resources.

The core never names a handler's dependencies; a handler's ``from_context`` asks for what it
needs with :meth:`Context.shared`, and the context closes those resources at shutdown.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlite_utils import Database

from harbord.catalog import Catalog
from harbord.config import Config

T = TypeVar("T")


@dataclass
class Context:
    """Dependencies of handlers; owned (and closed) by the daemon or the ``ingest`` command."""

    config: Config
    db: Database
    catalog: Catalog
    _resources: dict[str, Any] = field(default_factory=dict)
    _closers: list[Callable[[], Any]] = field(default_factory=list)

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
