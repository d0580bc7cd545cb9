"""Job transition events and where they go.

An event is a JSON-able dict: ``{"type", "job_id", "path", "item_id", "stage", "error", "ts"}``
with ``type`` in EVENT_TYPES. The daemon's sink is a :class:`FanOut` to the MQTT outbox and
every capability's event subscribers (``Capability.subscribers``; later the HTTP event stream),
so each receives every event; tests and ``ingest`` may use a list.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import structlog

from harbord.pathtext import display

EVENT_TYPES = ("queued", "stage", "ingested", "duplicate", "failed", "dead", "enriched", "edited")
"""Job transitions, then item events: ``enriched`` (metadata added, in the background or on
request: ``item_id``, ``title``, ``year``, ``poster``) and ``edited`` (a person changed fields)."""


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


class FanOut:
    """Hands every event to each of its sinks, in the order they were added.

    A sink that raises does not keep the event from the others, and never reaches the caller
    (event delivery must not fail ingestion): the error is logged with the sink's type.
    """

    def __init__(self, sinks: list[EventSink] | None = None) -> None:
        self.sinks: list[EventSink] = list(sinks or [])

    def add(self, sink: EventSink) -> None:
        """Deliver later events to ``sink`` too."""
        self.sinks.append(sink)

    def remove(self, sink: EventSink) -> None:
        """Stop delivering to ``sink`` (a closed event stream); unknown sinks are ignored."""
        if sink in self.sinks:
            self.sinks.remove(sink)

    def emit(self, event: dict[str, Any]) -> None:
        """Give ``event`` to every sink."""
        for sink in list(self.sinks):
            try:
                sink.emit(event)
            except Exception as err:  # one subscriber's fault is not the others'
                structlog.get_logger("harbord.events").error(
                    "event sink failed", sink=type(sink).__name__, error=repr(err),
                    event_type=event.get("type"))


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
