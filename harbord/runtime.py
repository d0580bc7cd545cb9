"""Open everything a run needs (database, catalog, job table, handler chain) and close it again.

Shared by the daemon and ``harbord ingest`` so both run jobs the same way.

The CPU pool is set up before the database side is imported and opened (sqlite-utils pulls in
numpy: ~0.2 s here), so the pool's fork server imports the handler modules and builds guessit's
rules on the second core meanwhile; ``harbord ingest`` starts it before anything else
(:func:`start_cpu_pool`). With ``harbord ingest`` of 200 small files on this 2-core machine
kind, the first parse result arrives ~0.6 s after process start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from harbord import offload
from harbord.chain import Handler
from harbord.config import Config, ensure_dirs
from harbord.errors import ConfigError

if TYPE_CHECKING:
    from harbord.context import Context


@dataclass
class Runtime:
    """One open run: the dependency container handed to handlers (:class:`Context`: config,
    database, catalog, job table, shared resources) and the handler chain built on it."""

    ctx: Context
    handlers: list[Handler]

    async def aclose(self) -> None:
        """Close handler resources (index saves happen here), the pool and the database."""
        await self.ctx.aclose()
        offload.shutdown()
        self.ctx.db.close()


def open_runtime(config: Config, *, processes: bool = True) -> Runtime:
    """Create folders, open the database (migrating it) and build the handler chain.

    ``processes``: set up the CPU process pool (``pipeline.cpu_processes``); its workers start
    on the first CPU-bound call, so the daemon does not pay ~0.5 s of CPU for them until a file
    arrives (``harbord ingest`` starts them itself, at once: :func:`start_cpu_pool`). Before
    the database is opened it is checked (:func:`harbord.integrity.check_catalog`: ``PRAGMA
    quick_check``, and a missing or empty catalog beside a library holding objects is refused).
    Raises ConfigError (folders cannot be made, a handler cannot be built) or CatalogError
    (database unusable, damaged, or not the library's).
    """
    pipeline = config.pipeline
    classes = handler_classes(config)
    if processes:  # workers start on the first CPU-bound call (the daemon: when a file arrives)
        start_cpu_pool(config, start=False)
    try:
        from harbord.catalog import Catalog
        from harbord.context import Context
        from harbord.groupdb import open_group_db
        from harbord.integrity import check_catalog
        from harbord.queue import JobQueue

        ensure_dirs(config)
        check_catalog(config.db_path, config.paths.library)
        db = open_group_db(config.db_path)  # the one writer, group commit
        catalog = Catalog(db)
        ctx = Context(config=config, db=db, catalog=catalog, queue=JobQueue.for_config(db, pipeline))
        handlers: list[Handler] = [cls.from_context(ctx) for cls in classes]
    except BaseException:
        if processes:
            offload.shutdown()
        raise
    return Runtime(ctx=ctx, handlers=handlers)


def handler_classes(config: Config) -> list[type[Handler]]:
    """The handler classes of ``pipeline.handlers``, in order (importing their modules) from
    the capabilities' step registry (:data:`harbord.capability.STEPS`). Raises ConfigError for
    an unknown name."""
    from harbord.capability import STEPS

    try:
        return [STEPS[name] for name in config.pipeline.handlers]
    except KeyError as err:
        raise ConfigError(f"unknown handler {err.args[0]!r}", key="pipeline.handlers") from err


def start_cpu_pool(config: Config, *, start: bool = True) -> None:
    """Set up the CPU process pool for the configured chain (``pipeline.cpu_processes``
    workers, the modules its steps name preloaded and warmed:
    :func:`harbord.capability.pool_setup`); ``start``: start its workers now, in the background.
    The handler modules are not imported here: ``harbord ingest`` calls this right after
    reading the config, so the pool's start-up (~0.3 s: a fork server importing guessit and
    building its rules) overlaps everything else it does."""
    from harbord.capability import pool_setup

    offload.configure(config.pipeline.cpu_processes, start=start, **pool_setup(config.pipeline.handlers))
