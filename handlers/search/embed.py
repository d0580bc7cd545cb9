"""Chain step ``embed``: turn what is known about an item into a vector in the store.

Builds the item's embedding input from its catalog row (text from title, year,
series/season/episode, overview, genres, cast, tags, EXIF date and place, source metadata; or
the media file itself for a backend such as ImageBind that embeds images/audio/video), embeds
it (batched, off the event loop, model loaded once per process) and appends the vector to the
space's append-only store as *staged*. The ``index`` step makes it live. Sets
``job.vectors[space] = vector_id``.

Idempotent: when the item's live vector was made from the same input, nothing is embedded and
the live id is reused. Heavy imports (torch, the model) happen on first use, not at import.

The enrichment step re-embeds an item after adding text with
:func:`handlers.search.service.reembed_item`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

from harbord.errors import (
    DATABASE_BUSY,
    ConfigError,
    EmbeddingError,
    PermanentError,
    RetryableError,
    SpaceBusyError,
    UnknownItemError,
    VectorError,
    translate,
)
from harbord.job import Job

if TYPE_CHECKING:
    from handlers.search.service import SemanticIndex
    from harbord.context import Context


class Embed:
    """Embed one job's item; see the module docstring.

    Raises PermanentError when the job has no catalogued item (``store`` must run first), the
    backend is misconfigured or the model fails; RetryableError when the vector space is
    locked by another process or the disk refuses the append.
    """

    name: ClassVar[str] = "embed"

    def __init__(self, service: SemanticIndex) -> None:
        self.service = service

    @classmethod
    def from_context(cls, ctx: Context) -> Embed:
        """Build the handler on the process's shared semantic index service."""
        from handlers.search.service import semantic_service

        return cls(semantic_service(ctx))

    async def handle(self, job: Job) -> Job:
        """Stage the item's vector; returns the job with ``vectors[space]`` set."""
        item_id = job.item_id
        if item_id is None and job.file_hash:
            item_id = self.service.catalog.item_id_for_object(job.file_hash)
        if item_id is None:
            raise PermanentError("no catalog item to embed (the 'store' step must run before 'embed')")
        with translate({
            **DATABASE_BUSY,
            UnknownItemError: lambda err: PermanentError(f"item {item_id} is not in the catalog"),
            SpaceBusyError: RetryableError,  # (a VectorError: the more specific key wins)
            ConfigError: PermanentError, EmbeddingError: PermanentError, VectorError: PermanentError,
            OSError: lambda err: RetryableError(f"vector store write failed: {err}"),
        }):
            embedder = await self.service.embedder()
            inp = await self.service.input_for_item(item_id)
            vector_id = await self.service.embed_and_stage(inp)
        return dataclasses.replace(job, item_id=item_id,
                                   vectors={**job.vectors, embedder.space: vector_id})

