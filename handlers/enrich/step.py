"""Chain step ``enrich``: identify a movie or episode and add what the providers know.

Runs after ``store`` (the item exists) and before ``embed`` (so the embedded text includes the
plot and cast when the providers answer in time). It never holds a job: it waits at most
``[enrich] timeout_seconds`` for the whole enrichment; when that passes, or a provider cannot
answer now (network, 429, 5xx), the job goes on with what is known, the item's enrichment is
``pending``, and the daemon's background task (:func:`handlers.enrich.service.background`)
finishes it later, then re-embeds the item (an ``enriched`` event). Idempotent: enriching an
item twice gives the same record (answers come from the cache the second time).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

from handlers.enrich.service import EnrichService, enrich_service
from harbord.errors import DATABASE_BUSY, translate
from harbord.job import Job

if TYPE_CHECKING:
    from harbord.context import Context


class Enrich:
    """See the module docstring. A job without a catalog item, or of another media type,
    passes through unchanged. Raises RetryableError only for a busy database."""

    name: ClassVar[str] = "enrich"

    def __init__(self, service: EnrichService, deadline: float) -> None:
        self.service = service
        self.deadline = deadline
        """Seconds the step waits for the enrichment before leaving it to the background."""

    @classmethod
    def from_context(cls, ctx: Context) -> Enrich:
        """Build the step on the process's shared enrich service."""
        service = enrich_service(ctx)
        if service.cfg.enabled:  # import the client libraries now, not on the first item's loop turn
            import handlers.enrich.providers.musicbrainz
            import handlers.enrich.providers.omdb
            import handlers.enrich.providers.tmdb  # noqa: F401
        return cls(service, service.cfg.timeout_seconds)

    async def handle(self, job: Job) -> Job:
        """Enrich ``job.item_id``; returns the job with ``enrichment`` set to what was stored."""
        if job.item_id is None or job.media_type not in ("movie", "episode") or not self.service.cfg.enabled:
            return job
        with translate(DATABASE_BUSY):
            task = asyncio.ensure_future(self.service.enrich_item(job.item_id))
            done, _ = await asyncio.wait([task], timeout=self.deadline)
            if not done:  # it finishes in the background; the answers it gets are cached
                task.add_done_callback(_quiet)
                self.service.mark_pending(job.item_id, f"no answer within {self.deadline:g} s")
                return job
            outcome = task.result()
        return dataclasses.replace(job, enrichment=outcome.enrichment)


def _quiet(task: asyncio.Task[Any]) -> None:
    """Retrieve a late enrichment's exception so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()
