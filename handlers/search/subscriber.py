"""The search capability's event subscriber: an item whose metadata changed after it was
embedded (an ``enriched`` event: enrichment finished in the background, or a person edited
it) is embedded again and its vector replaced (:func:`handlers.search.service.reembed_item`)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from harbord.context import Context

log = structlog.get_logger(__name__)

REEMBED_ON = frozenset({"enriched", "edited"})
"""Event types after which an item's text may have changed."""


class Reembed:
    """An EventSink: schedules a re-embed for each ``enriched``/``edited`` event with an
    ``item_id``; never blocks the emitter (the work runs as a task on the running loop, one at a
    time per item)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tasks: dict[int, asyncio.Task[Any]] = {}

    def emit(self, event: dict[str, Any]) -> None:
        """Schedule the re-embed of ``event["item_id"]`` when the event is one of :data:`REEMBED_ON`."""
        item_id = event.get("item_id")
        if event.get("type") not in REEMBED_ON or not isinstance(item_id, int):
            return
        if "embed" not in self.ctx.config.pipeline.handlers:
            return
        if (task := self.tasks.get(item_id)) is not None and not task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # emitted outside the daemon's loop (a CLI command): nothing to do
            return
        self.tasks[item_id] = loop.create_task(self._run(item_id), name=f"reembed-{item_id}")

    async def _run(self, item_id: int) -> None:
        from handlers.search.service import reembed_item

        try:
            await reembed_item(self.ctx, item_id)
        except Exception as err:  # the next enrichment or a `harbord reindex` fixes it
            log.warning("re-embed after enrichment failed", item_id=item_id, error=str(err))
        finally:
            self.tasks.pop(item_id, None)


def subscriber(ctx: Context) -> Reembed:
    """The capability's subscriber for the daemon's fan-out sink."""
    return Reembed(ctx)
