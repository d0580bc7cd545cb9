"""Open everything a run needs (database, catalog, job table, handler chain) and close it again.

Shared by the daemon and ``harbord ingest`` so both run jobs the same way.

:func:`open_runtime` starts the CPU pool first (with ``start_pool``) and only then imports and
opens the database side (sqlite-utils pulls in numpy: ~0.2 s here), so the pool's fork server
imports the handler modules on the second core meanwhile. Measured with ``harbord ingest`` of one file on this
2-core machine kind (median of 5): the pool starts 0.43 s after process start instead of
0.60 s, and is ready at 1.02 s instead of 1.12 s.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harbord import offload
from harbord.chain import Handler
from harbord.config import Config, ensure_dirs
from harbord.errors import ConfigError

if TYPE_CHECKING:
    from harbord.catalog import Catalog
    from harbord.context import Context
    from harbord.queue import JobQueue


@dataclass
class Runtime:
    """Open database, catalog, job table, handler context and the built handler chain."""

    config: Config
    ctx: Context
    queue: JobQueue
    handlers: list[Handler]

    @property
    def catalog(self) -> Catalog:
        """The catalog on the runtime's database."""
        return self.ctx.catalog

    def watch_roots(self) -> list[Path]:
        """The watched folders."""
        return [w.path for w in self.config.watches()]

    def snapshot(self, active: int = 0) -> dict[str, Any]:
        """The state published on ``<base>/state`` (and shown by ``status``)."""
        jobs = self.queue.counts()
        outcomes = self.queue.outcome_counts()
        return {
            "queue_depth": jobs["pending"],
            "active_jobs": active,
            "jobs": jobs,
            "totals": self.catalog.totals(),
            "ingested_total": outcomes["ingested"],
            "duplicate_total": outcomes["duplicate"],
            "failed_total": jobs["failed"] + jobs["dead"],
            "dead": jobs["dead"],
            "last_item": self.catalog.last_item(),
        }

    async def aclose(self) -> None:
        """Close handler resources (index saves happen here), the pool and the database."""
        await self.ctx.aclose()
        offload.shutdown()
        self.ctx.db.close()


def open_runtime(config: Config, *, processes: bool = True, start_pool: bool = False) -> Runtime:
    """Create folders, open the database (migrating it) and build the handler chain.

    ``processes``: set up the CPU process pool (``pipeline.cpu_processes``); its workers start
    on the first CPU-bound call, or right away (in the background) with ``start_pool``, for
    ``harbord ingest``, which needs them at once; the daemon does not pay ~0.5 s of CPU for
    them until a file arrives. Raises ConfigError (folders cannot be made, a handler cannot be
    built) or CatalogError (database unusable).
    """
    from handlers import BUILTIN

    pipeline = config.pipeline
    try:
        classes = [BUILTIN[name] for name in pipeline.handlers]
    except KeyError as err:
        raise ConfigError(f"unknown handler {err.args[0]!r}", key="pipeline.handlers") from err
    if processes:  # first, so the pool's start-up overlaps the imports and database work below
        offload.configure(pipeline.cpu_processes, start=start_pool, **pool_setup(classes))
    try:
        from harbord.catalog import Catalog, open_db
        from harbord.context import Context
        from harbord.queue import JobQueue

        ensure_dirs(config)
        db = open_db(config.db_path)
        catalog = Catalog(db)
        ctx = Context(config=config, db=db, catalog=catalog)
        queue = JobQueue(db, pipeline.max_attempts, pipeline.retry_base_seconds, pipeline.retry_max_seconds)
        handlers: list[Handler] = [cls.from_context(ctx) for cls in classes]
    except BaseException:
        if processes:
            offload.shutdown()
        raise
    return Runtime(config=config, ctx=ctx, queue=queue, handlers=handlers)


def pool_setup(classes: Sequence[type]) -> dict[str, Any]:
    """What the CPU pool preloads for these handler classes: ``preload`` = their modules (the
    fork server imports them once for all workers), ``warmups`` = each module's optional
    top-level ``warm_worker()`` (run once in every worker as it starts)."""
    modules = list(dict.fromkeys(cls.__module__ for cls in classes))
    warmups = [getattr(sys.modules[m], "warm_worker", None) for m in modules if m in sys.modules]
    return {"preload": modules, "warmups": [w for w in warmups if callable(w)]}
