"""Job transition events and where they go.

An event is a JSON-able dict: ``{"type", "job_id", "path", "item_id", "stage", "error", "ts"}``
with ``type`` in EVENT_TYPES. The daemon's sink is the MQTT outbox; tests and ``ingest`` may
use a list.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from harbord.pathtext import display

EVENT_TYPES = ("queued", "stage", "ingested", "duplicate", "failed", "dead")


class EventSink(Protocol):
    """Receives job events; must not block (the MQTT sink writes to a SQLite outbox)."""

    def emit(self, event: dict[str, Any]) -> None:
        """Accept one event."""
        ...


class NullSink:
    """Drops every event (``mqtt.enabled = false``)."""

    def emit(self, event: dict[str, Any]) -> None:
        """Drop ``event``."""


class ListSink:
    """Keeps events in memory, in order (tests, the ``ingest`` command's summary)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        """Append ``event``."""
        self.events.append(event)


def make_event(
    type_: str,
    job_id: str,
    path: str,
    *,
    item_id: int | None = None,
    stage: str | None = None,
    error: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build one event dict; ``ts`` is seconds since the epoch. None fields are dropped. A
    ``path`` that is not valid UTF-8 (see :mod:`harbord.pathtext`) also gets ``path_display``,
    its printable form; ``path`` itself stays lossless (JSON-escaped surrogates)."""
    event: dict[str, Any] = {"type": type_, "job_id": job_id, "path": path, "ts": time.time()}
    shown = display(path)
    if shown != path:
        event["path_display"] = shown
    for key, value in {"item_id": item_id, "stage": stage, "error": error, **extra}.items():
        if value is not None:
            event[key] = value
    return event
