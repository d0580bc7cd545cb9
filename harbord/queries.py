"""What the CLI, MQTT and (later) the HTTP API ask of the catalog and job table: status, show,
retry, and the daemon's state snapshot.

Each function opens the database of ``config`` for its own answer and closes it, so it can run
beside the daemon (WAL: readers never block the writer). Results are typed dicts, the shapes
the README documents for ``status --json`` and ``show --json``; the CLI formats them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypedDict, cast

from sqlite_utils import Database

from harbord.config import Config

if TYPE_CHECKING:
    from harbord.catalog import Catalog
    from harbord.queue import JobQueue

HASH = re.compile(r"[0-9a-f]{64}")
"""A content hash (BLAKE3 hex) as ``show`` accepts it."""


class Failure(TypedDict):
    """A failed or dead job: ``next_attempt_at`` in seconds since the epoch (None: no retry planned)."""

    job_id: str
    path: str
    state: str
    attempts: int
    error: str | None
    next_attempt_at: float | None


class Status(TypedDict):
    """``harbord status --json``: jobs by state, catalog totals (``bytes`` of stored objects)
    and the 10 most recent failures, newest first."""

    jobs: dict[str, int]
    items: int
    objects: int
    bytes: int
    failures: list[Failure]


Item = dict[str, Any]
"""``harbord show --json``: the item row with its JSON columns decoded, ``object`` (its objects
row), ``files`` and ``sidecars`` (:meth:`harbord.catalog.Catalog.get_item`)."""


@contextmanager
def _database(config: Config) -> Iterator[Database]:
    from harbord.catalog import open_db

    db = open_db(config.db_path)
    try:
        yield db
    finally:
        db.close()


def status(config: Config) -> Status:
    """Job counts, totals and recent failures; all zero when no database exists yet (nothing
    is created). Raises CatalogError for an unusable database."""
    from harbord.catalog import Catalog
    from harbord.queue import STATES, JobQueue

    if not config.db_path.exists():
        return {"jobs": dict.fromkeys(STATES, 0), "items": 0, "objects": 0, "bytes": 0, "failures": []}
    with _database(config) as db:
        queue = JobQueue.for_config(db, config.pipeline)
        totals = Catalog(db).totals()
        failures = cast(list[Failure], queue.recent_failures(10))
        return {"jobs": queue.counts(), "items": totals["items"], "objects": totals["objects"],
                "bytes": totals["bytes"], "failures": failures}


def show(config: Config, ref: str) -> Item | None:
    """The item named by ``ref``: an item id (digits), a content hash (64 hex), a job id, or a
    file path (relative to the working directory) it was seen at. None when nothing matches.
    Raises CatalogError for an unusable database."""
    from harbord.catalog import Catalog
    from harbord.queue import JobQueue

    with _database(config) as db:
        catalog = Catalog(db)
        item_id: int | None = int(ref) if ref.isdigit() else None
        if item_id is None and HASH.fullmatch(ref):
            item_id = catalog.item_id_for_object(ref)
        elif item_id is None:
            job = JobQueue.for_config(db, config.pipeline).get(ref)
            item_id = job["record"].item_id if job else catalog.item_id_for_path(os.path.abspath(ref))
        return catalog.get_item(item_id) if item_id is not None else None


def snapshot(catalog: Catalog, queue: JobQueue, active: int = 0) -> dict[str, Any]:
    """The daemon's state, published retained on ``<base>/state`` (README, MQTT): queue depth,
    ``active`` jobs, jobs by state, totals, outcome totals and the last item."""
    jobs = queue.counts()
    outcomes = queue.outcome_counts()
    return {
        "queue_depth": jobs["pending"],
        "active_jobs": active,
        "jobs": jobs,
        "totals": catalog.totals(),
        "ingested_total": outcomes["ingested"],
        "duplicate_total": outcomes["duplicate"],
        "failed_total": jobs["failed"] + jobs["dead"],
        "dead": jobs["dead"],
        "last_item": catalog.last_item(),
    }


def retry(config: Config, job_id: str | None = None, states: tuple[str, ...] = ()) -> list[str]:
    """Put failed/dead jobs back in the queue: the job ``job_id`` (when failed or dead), or
    every job in ``states`` (``"failed"``, ``"dead"``). Returns the ids queued again; the
    running daemon picks them up within 5 s. Raises CatalogError for an unusable database."""
    from harbord.queue import JobQueue

    with _database(config) as db:
        return JobQueue.for_config(db, config.pipeline).retry(job_id, states)
