"""SQLite schema, migrations and catalog queries (sqlite-utils).

One database file (``<paths.state>/harbord.db``, WAL mode) holds the catalog (items, files,
objects), the durable job table (see :mod:`harbord.queue`) and the MQTT outbox. The daemon is
the single writer of catalog rows; CLI commands read, and ``retry`` flips job states.

Core schema (version = ``PRAGMA user_version``):

- ``objects(hash PK, size, ext, path, refcount, created_at, verified_at)``: one row per stored
  blob. ``refcount`` is legacy and no longer written (0 in new rows, stale in old ones): the
  count of ``files`` rows pointing at the object is derived where it is read
  (:meth:`Catalog.get_object`, through the ``files_object`` index).
- ``items(id PK, object_hash UNIQUE, title, year, media_type, season, episode, parsed,
  probe, sidecars, enrichment, series, user_fields, source, created_at, updated_at)``:
  one item per distinct content; JSON columns hold handler facts. ``sidecars`` is legacy and
  no longer written (``'{}'`` in new rows): an item's sidecars are the ``sidecars`` table's
  rows (:meth:`Catalog.get_item`, :meth:`Catalog.sidecars_of`).
- ``files(id PK, path, size, mtime, item_id, object_hash, source, job_id, present, seen_at)``:
  every path a content was seen at (duplicates are more files of one item).
- ``sidecars(id PK, item_id, kind, source, path, size, job_id, seen_at)``: sidecar files
  (subtitles, info json, nfo, cover art, IA metadata) kept beside an item's object.

The two legacy columns stay: dropping a column needs SQLite 3.35 (RHEL 9 ships 3.34), rewrites
the table, and an old catalog's rows keep their old columns (new ones are only appended).
- ``schema_versions(capability, version)``: each capability's own migration track; their
  tables (search: ``vectors``, ``vectors_staged``) are described in their own schema modules.
- ``jobs``: see :mod:`harbord.queue`. ``outbox``: see :mod:`harbord.mqtt`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from harbord.capability import Migration
from harbord.errors import CatalogError, UnknownItemError
from harbord.job import Job
from harbord.pathtext import display, from_db, to_db


def _m1_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE objects (
            hash TEXT PRIMARY KEY, size INTEGER NOT NULL, ext TEXT NOT NULL,
            path TEXT NOT NULL, refcount INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL
        );
        CREATE TABLE items (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            object_hash TEXT UNIQUE REFERENCES objects(hash),
            title TEXT, year INTEGER, media_type TEXT, season INTEGER, episode TEXT,
            parsed TEXT NOT NULL DEFAULT '{}', probe TEXT NOT NULL DEFAULT '{}',
            sidecars TEXT NOT NULL DEFAULT '{}', enrichment TEXT NOT NULL DEFAULT '{}',
            series TEXT NOT NULL DEFAULT '{}', user_fields TEXT NOT NULL DEFAULT '[]',
            source TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL
        );
        CREATE TABLE files (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            path TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL,
            item_id INTEGER REFERENCES items(id), object_hash TEXT REFERENCES objects(hash),
            source TEXT, job_id TEXT, present INTEGER NOT NULL DEFAULT 1, seen_at REAL NOT NULL,
            UNIQUE(path, size, mtime)
        );
        CREATE INDEX files_item ON files(item_id);
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY, path TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL,
            source TEXT NOT NULL, state TEXT NOT NULL, stage INTEGER NOT NULL DEFAULT 0,
            outcome TEXT, record TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL, last_error TEXT, created_at REAL NOT NULL,
            updated_at REAL NOT NULL, UNIQUE(path, size, mtime)
        );
        CREATE INDEX jobs_state ON jobs(state, next_attempt_at);
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload TEXT NOT NULL,
            qos INTEGER NOT NULL DEFAULT 1, retain INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        );
        """
    )


def _m2_vectors(db: Database) -> None:
    """Made the search capability's ``vectors`` tables before capabilities had their own
    version track; now :mod:`handlers.search.schema` (its version 1) makes them, and a catalog
    migrated by this step keeps them. Kept as a step that does nothing so the core's version
    numbers stay those of existing catalogs."""


def _m3_sidecars(db: Database) -> None:
    """Sidecar files kept with an item: ``source`` is where the sidecar was found (for a folder
    sidecar such as ``poster.jpg``, one row per item it serves), ``path`` its copy beside the
    item's object in the library, ``size`` bytes."""
    db.executescript(
        """
        CREATE TABLE sidecars (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
            kind TEXT NOT NULL, source TEXT NOT NULL, path TEXT NOT NULL,
            size INTEGER NOT NULL, job_id TEXT, seen_at REAL NOT NULL,
            UNIQUE(item_id, kind, source)
        );
        CREATE INDEX sidecars_source ON sidecars(source);
        """
    )


def _m4_job_owner(db: Database) -> None:
    """``jobs.owner``: the process running a ``running`` job (``"<pid>:<start ticks>"``, see
    :func:`harbord.queue.process_token`), so a daemon starting while ``harbord ingest`` runs
    jobs puts back only the jobs of processes that are gone."""
    db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")


def _m5_object_verified(db: Database) -> None:
    """``objects.verified_at``: when the object's bytes were last re-hashed and found to match
    its name (seconds since the epoch), NULL if never; a duplicate's source is removed only
    after such a check (see :func:`handlers.files.store.verify_object`)."""
    db.execute("ALTER TABLE objects ADD COLUMN verified_at REAL")


def _m6_claim_order(db: Database) -> None:
    """``jobs_claim(state, created_at)``: :meth:`harbord.queue.JobQueue.claim` takes the oldest
    pending job by walking this index instead of sorting every runnable row per claim (1.4 ms
    per claim with 2,000 queued here, O(n^2) over a batch)."""
    db.execute("CREATE INDEX jobs_claim ON jobs(state, created_at)")


def _m7_schema_versions(db: Database) -> None:
    """``schema_versions(capability, version)``: each capability's own migration track
    (:func:`migrate_capabilities`)."""
    db.execute("CREATE TABLE schema_versions (capability TEXT PRIMARY KEY, version INTEGER NOT NULL)")


def _m8_files_object(db: Database) -> None:
    """``files_object(object_hash)``: an object's reference count is the number of ``files``
    rows pointing at it, counted through this index when read (``objects.refcount`` is no
    longer kept)."""
    db.execute("CREATE INDEX files_object ON files(object_hash)")


MIGRATIONS: list[Migration] = [
    _m1_initial, _m2_vectors, _m3_sidecars, _m4_job_owner, _m5_object_verified, _m6_claim_order,
    _m7_schema_versions, _m8_files_object,
]
"""Schema migrations in order; migration ``i`` brings ``user_version`` from ``i`` to ``i + 1``.
Append, never edit a released one."""


def open_db(path: Path | str) -> Database:
    """Open (creating if needed) the harbord database and bring its schema up to date.

    WAL journal, ``synchronous=NORMAL`` (durable at checkpoints, never corrupt), 10 s busy
    timeout so a CLI command and the daemon can share the file. Raises CatalogError if the file
    cannot be opened or is not a harbord database (a damaged one: the message names the
    recovery, see :func:`harbord.integrity.catalog_error`). It does not check the whole file;
    the daemon and ``harbord ingest`` do, first (:func:`harbord.integrity.check_catalog`).
    """
    try:
        conn = sqlite3.connect(str(path), timeout=10.0, check_same_thread=False)
        db = Database(conn)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        migrate(db)
    except sqlite3.DatabaseError as err:
        from harbord.integrity import catalog_error

        raise catalog_error(path, err, "cannot open") from err
    return db


def migrate(db: Database) -> int:
    """Apply pending core migrations, then each capability's (:func:`migrate_capabilities`),
    each in its own transaction; returns the core schema version. Raises CatalogError for a
    database made by a newer harbord."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise CatalogError(f"database schema {version} is newer than this harbord ({len(MIGRATIONS)})")
    for index in range(version, len(MIGRATIONS)):
        with db.atomic():
            MIGRATIONS[index](db)
            db.execute(f"PRAGMA user_version = {index + 1}")
    migrate_capabilities(db)
    return len(MIGRATIONS)


def migrate_capabilities(db: Database) -> dict[str, int]:
    """Bring every capability's tables up to date on its own track: its migration ``i`` brings
    ``schema_versions.version`` from ``i`` to ``i + 1``, recorded in the same transaction.
    Returns ``{capability: version}``. Raises CatalogError when the database holds a newer
    version of a capability's tables than this harbord knows."""
    from harbord.capability import capabilities

    known = {str(row[0]): int(row[1]) for row in db.execute(
        "SELECT capability, version FROM schema_versions").fetchall()}
    done: dict[str, int] = {}
    for cap in capabilities():
        version = known.get(cap.name, 0)
        if version > len(cap.migrations):
            raise CatalogError(f"the {cap.name} tables are at version {version}, newer than "
                               f"this harbord ({len(cap.migrations)})")
        for index in range(version, len(cap.migrations)):
            with db.atomic():
                cap.migrations[index](db)
                db.execute("INSERT INTO schema_versions(capability, version) VALUES (?, ?) "
                           "ON CONFLICT(capability) DO UPDATE SET version = excluded.version",
                           [cap.name, index + 1])
        done[cap.name] = len(cap.migrations)
    return done


def _loads(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return row


ITEM_JSON = ("parsed", "probe", "enrichment", "series", "user_fields")


class Catalog:
    """Queries over items, files and objects. All methods run on the caller's thread."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # objects -----------------------------------------------------------------------------
    def get_object(self, file_hash: str) -> dict[str, Any] | None:
        """The objects row for a BLAKE3 hex hash, or None; ``refcount`` is the number of
        ``files`` rows pointing at it (derived, not the legacy column)."""
        rows = list(self.db.query("SELECT * FROM objects WHERE hash = ?", [file_hash]))
        if not rows:
            return None
        row = rows[0]
        row["refcount"] = int(self.db.execute(
            "SELECT count(*) FROM files WHERE object_hash = ?", [file_hash]).fetchone()[0])
        return row

    def add_object(self, file_hash: str, size: int, ext: str, path: str) -> bool:
        """Record a stored object (size in bytes); returns False when it was already known."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO objects(hash, size, ext, path, created_at) VALUES (?, ?, ?, ?, ?)",
            [file_hash, size, ext, path, time.time()],
        )
        return cur.rowcount == 1

    def object_verified(self, file_hash: str) -> None:
        """Record that the object's bytes were just re-hashed and match its name."""
        self.db.execute("UPDATE objects SET verified_at = ? WHERE hash = ?", [time.time(), file_hash])

    # items -------------------------------------------------------------------------------
    def item_id_for_object(self, file_hash: str) -> int | None:
        """The item holding this content, or None."""
        row = self.db.execute("SELECT id FROM items WHERE object_hash = ?", [file_hash]).fetchone()
        return int(row[0]) if row else None

    def upsert_item(self, job: Job, existing: int | None = -1) -> int:
        """Create or update the item for ``job.file_hash`` from what the job knows.

        Columns named in the item's ``user_fields`` (edited by a person) are never overwritten.
        ``existing``: the item id the caller already looked up (None: there is none), or -1
        to look it up here. Returns the item id. Raises CatalogError if the job has no hash.
        """
        if not job.file_hash:
            raise CatalogError(f"{job.path}: cannot catalog an item without a content hash")
        parsed = job.parsed
        episode = parsed.get("episode")
        values: dict[str, Any] = {
            "title": display(title) if isinstance(title := parsed.get("title"), str) else title,
            "year": parsed.get("year"),
            "media_type": job.media_type,
            "season": parsed.get("season") if isinstance(parsed.get("season"), int) else None,
            "episode": json.dumps(episode) if isinstance(episode, list) else episode,
            "parsed": json.dumps(parsed, default=str),
            "probe": json.dumps(job.probe, default=str),
            "enrichment": json.dumps(job.enrichment, default=str),
            "series": json.dumps(job.series, default=str),
            "source": job.source,
        }
        now = time.time()
        with self.db.atomic():
            if existing == -1:  # not looked up by the caller
                existing = self.item_id_for_object(job.file_hash)
            if existing is None:
                values.update(object_hash=job.file_hash, created_at=now, updated_at=now)
                cols = ", ".join(values)
                marks = ", ".join("?" for _ in values)
                cur = self.db.execute(f"INSERT INTO items({cols}) VALUES ({marks})", list(values.values()))
                return int(cur.lastrowid or 0)
            user = set(json.loads(self.db.execute(
                "SELECT user_fields FROM items WHERE id = ?", [existing]).fetchone()[0]))
            values = {k: v for k, v in values.items() if k not in user}
            values["updated_at"] = now
            sets = ", ".join(f"{k} = ?" for k in values)
            self.db.execute(f"UPDATE items SET {sets} WHERE id = ?", [*values.values(), existing])
            return existing

    def update_item(self, item_id: int, fields: dict[str, Any], *, user: bool = False) -> None:
        """Set columns of one item. With ``user=True`` the columns become user-edited (locked
        against handlers); otherwise user-edited columns are left as they are. Raises
        UnknownItemError for an unknown item, CatalogError for an unknown column."""
        allowed = {"title", "year", "media_type", "season", "episode", *ITEM_JSON}
        bad = set(fields) - allowed
        if bad:
            raise CatalogError(f"unknown item field(s): {sorted(bad)}")
        with self.db.atomic():
            row = self.db.execute("SELECT user_fields FROM items WHERE id = ?", [item_id]).fetchone()
            if row is None:
                raise UnknownItemError(f"no item {item_id}")
            locked = set(json.loads(row[0]))
            if user:
                locked |= set(fields)
            else:
                fields = {k: v for k, v in fields.items() if k not in locked}
            values = {
                k: json.dumps(v, default=str) if k in ITEM_JSON else v for k, v in fields.items()
            }
            values["user_fields"] = json.dumps(sorted(locked))
            values["updated_at"] = time.time()
            sets = ", ".join(f"{k} = ?" for k in values)
            self.db.execute(f"UPDATE items SET {sets} WHERE id = ?", [*values.values(), item_id])

    def get_item(self, item_id: int) -> dict[str, Any] | None:
        """One item with its JSON columns decoded, its sidecars (kind -> library path, from the
        ``sidecars`` table: :meth:`sidecars_of`), its object row and its files; or None."""
        rows = list(self.db.query("SELECT * FROM items WHERE id = ?", [item_id]))
        if not rows:
            return None
        item = _loads(rows[0], *ITEM_JSON)
        item["sidecars"] = self.sidecars_of(item_id)  # in the legacy column's place
        item["object"] = self.get_object(item["object_hash"]) if item["object_hash"] else None
        item["files"] = [
            {**row, "path": from_db(row["path"])} for row in self.db.query(
                "SELECT path, size, mtime, source, job_id, present, seen_at FROM files "
                "WHERE item_id = ? ORDER BY id", [item_id]
            )
        ]
        return item

    def item_id_for_path(self, path: str) -> int | None:
        """The item a file path was last seen as, or None."""
        row = self.db.execute(
            "SELECT item_id FROM files WHERE path = ? ORDER BY id DESC LIMIT 1", [to_db(path)]
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def first_job_of_item(self, item_id: int) -> str | None:
        """The job that recorded the item's first file (the one that created it), or None."""
        row = self.db.execute(
            "SELECT job_id FROM files WHERE item_id = ? ORDER BY id LIMIT 1", [item_id]).fetchone()
        return str(row[0]) if row and row[0] is not None else None

    # files -------------------------------------------------------------------------------
    def add_file(self, job: Job, item_id: int, present: bool) -> None:
        """Record that ``job.path`` (size, mtime at settle) holds the content of ``item_id``.

        Idempotent: the same path+size+mtime is recorded once (so counts once in the object's
        refcount). ``present`` is False when the file was moved into the library.
        """
        with self.db.atomic():
            cur = self.db.execute(
                "INSERT OR IGNORE INTO files(path, size, mtime, item_id, object_hash, source, "
                "job_id, present, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [to_db(job.path), job.size, job.mtime, item_id, job.file_hash, job.source, job.id,
                 int(present), time.time()],
            )
            if cur.rowcount != 1:
                self.db.execute(
                    "UPDATE files SET present = ? WHERE path = ? AND size = ? AND mtime = ?",
                    [int(present), to_db(job.path), job.size, job.mtime],
                )

    def files_named(self, folder: str, stem: str) -> list[tuple[str, int]]:
        """(path, item id) of the files recorded as ``<folder>/<stem>.<ext>`` (present or moved),
        found by an index range on the path."""
        base = f"{folder.rstrip('/')}/{stem}."
        rows = self.db.execute(
            "SELECT path, item_id FROM files WHERE path >= ? AND path < ? AND item_id IS NOT NULL",
            [base, base[:-1] + "/"],  # "/" sorts right after "."
        ).fetchall()
        return [(path, int(item)) for path, item in rows if isinstance(path, str)
                and "." not in path[len(base):] and "/" not in path[len(base):]]

    # sidecars ----------------------------------------------------------------------------
    def add_sidecar(self, item_id: int, kind: str, source: str, path: str, size: int,
                    job_id: str | None) -> None:
        """Record that the sidecar found at ``source`` is kept for ``item_id`` at ``path``
        (``size`` bytes); the item is then updated (``updated_at``). Idempotent per (item, kind,
        source)."""
        now = time.time()
        cur = self.db.execute(
            "INSERT OR IGNORE INTO sidecars(item_id, kind, source, path, size, job_id, seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [item_id, kind, to_db(source), to_db(path), size, job_id, now],
        )
        if cur.rowcount == 1:
            self.db.execute("UPDATE items SET updated_at = ? WHERE id = ?", [now, item_id])

    def sidecars_of(self, item_id: int) -> dict[str, str]:
        """The kept sidecars of an item: kind -> library path (the first kept per kind)."""
        rows = self.db.execute(
            "SELECT kind, path FROM sidecars WHERE item_id = ? ORDER BY id DESC", [item_id]
        ).fetchall()
        return {kind: from_db(path) for kind, path in rows}

    def sidecar_item(self, source: str) -> int | None:
        """The item whose sidecar was found at ``source`` (the latest), or None."""
        row = self.db.execute(
            "SELECT item_id FROM sidecars WHERE source = ? ORDER BY id DESC LIMIT 1", [to_db(source)]
        ).fetchone()
        return int(row[0]) if row else None

    def file_seen(self, path: str, size: int, mtime: float) -> bool:
        """True if this path with this size (bytes) and mtime (s) is already catalogued."""
        row = self.db.execute(
            "SELECT 1 FROM files WHERE path = ? AND size = ? AND mtime = ?", [to_db(path), size, mtime]
        ).fetchone()
        return row is not None

    # totals ------------------------------------------------------------------------------
    def totals(self) -> dict[str, int]:
        """``{"items": n, "objects": n, "bytes": n}`` (bytes = sum of stored object sizes)."""
        items = self.db.execute("SELECT count(*) FROM items").fetchone()[0]
        objects, size = self.db.execute("SELECT count(*), coalesce(sum(size), 0) FROM objects").fetchone()
        return {"items": int(items), "objects": int(objects), "bytes": int(size)}

    def last_item(self) -> dict[str, Any] | None:
        """The most recently updated item's id, title, media_type and year, or None."""
        rows = list(self.db.query(
            "SELECT id, title, media_type, year FROM items ORDER BY updated_at DESC LIMIT 1"))
        return rows[0] if rows else None
