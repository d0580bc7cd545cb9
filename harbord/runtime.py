"""Open everything a run needs (database, catalog, job table, handler chain) and close it again.

Shared by the daemon and ``harbord ingest`` so both run jobs the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harbord import offload
from harbord.catalog import Catalog, open_db
from harbord.chain import Handler
from harbord.config import Config, ensure_dirs
from harbord.context import Context
from harbord.errors import ConfigError
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


def open_runtime(config: Config, *, processes: bool = True) -> Runtime:
    """Create folders, open the database (migrating it) and build the handler chain.

    ``processes``: start the CPU process pool (``pipeline.cpu_processes``). Raises ConfigError
    (folders cannot be made, a handler cannot be built) or CatalogError (database unusable).
    """
    from handlers import BUILTIN

    ensure_dirs(config)
    db = open_db(config.db_path)
    catalog = Catalog(db)
    ctx = Context(config=config, db=db, catalog=catalog)
    pipeline = config.pipeline
    queue = JobQueue(db, pipeline.max_attempts, pipeline.retry_base_seconds, pipeline.retry_max_seconds)
    handlers: list[Handler] = []
    for name in pipeline.handlers:
        try:
            handlers.append(BUILTIN[name].from_context(ctx))
        except KeyError as err:
            raise ConfigError(f"unknown handler {name!r}", key="pipeline.handlers") from err
    if processes:
        offload.configure(pipeline.cpu_processes)
    return Runtime(config=config, ctx=ctx, queue=queue, handlers=handlers)
