"""Chain step ``index``: make the vector the ``embed`` step staged the item's live vector.

Commits ``job.vectors[space]`` in SQLite (id map + vector hash; the item's previous vector is
marked deleted, so re-embedding replaces rather than adds) and adds it to the space's hnswlib
index, batched with other jobs (one transaction, one ``add_items``). The index is saved
atomically every ``[index] save_every_seconds`` and at shutdown by the shared service.

Idempotent: a vector that is already live is kept; a staged vector whose hash equals the
item's live vector is dropped and the live id kept, so running embed+index twice never leaves
two live vectors for one item.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

from harbord.errors import (
    DATABASE_BUSY,
    PermanentError,
    RetryableError,
    SpaceBusyError,
    VectorError,
    translate,
)
from harbord.job import Job

if TYPE_CHECKING:
    from handlers.search.service import SemanticIndex
    from harbord.context import Context


class Index:
    """Commit one job's staged vector; see the module docstring.

    A job without vectors for the current space passes through unchanged. Raises
    PermanentError for a vector id that was never staged, RetryableError when the space is
    locked by another process or the disk refuses.
    """

    name: ClassVar[str] = "index"

    def __init__(self, service: SemanticIndex) -> None:
        self.service = service

    @classmethod
    def from_context(cls, ctx: Context) -> Index:
        """Build the handler on the process's shared semantic index service."""
        from handlers.search.service import semantic_service

        return cls(semantic_service(ctx))

    async def handle(self, job: Job) -> Job:
        """Commit ``job.vectors[space]``; returns the job with the item's live vector id."""
        if not job.vectors or job.item_id is None:
            return job
        with translate({
            **DATABASE_BUSY,
            SpaceBusyError: RetryableError,  # (a VectorError: the more specific key wins)
            VectorError: PermanentError,
            OSError: lambda err: RetryableError(f"vector index update failed: {err}"),
        }):
            space = await self.service.space()
            vector_id = job.vectors.get(space.space)
            if vector_id is None:
                return job
            live = await self.service.commit(job.item_id, int(vector_id))
        vectors = dict(job.vectors)
        if live is None:
            vectors.pop(space.space, None)
        else:
            vectors[space.space] = live
        return dataclasses.replace(job, vectors=vectors)
