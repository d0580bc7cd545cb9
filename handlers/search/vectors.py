"""Vector store and the writer of one embedding space.

Per space, under ``<paths.state>/vectors/<space>/``:

- ``space.json``: ``{"format", "space", "model_id", "dim", "dtype": "<f4"}``, written once.
- ``vectors.f32``: the append-only vector store, the source of truth. Row ``i`` (the
  *vector id*, also the hnswlib label) is ``dim`` little-endian float32 values at byte
  ``i * dim * 4``. Rows are never rewritten; a replaced or deleted vector just stops being
  live. Appends are fsync'd before their ids are handed out, so an id recorded anywhere
  (job table, SQLite) always points at complete bytes. A torn tail left by a crash is cut
  off when the writer opens the store.
- ``index.json`` + ``index.*.bin``: the hnswlib index, a cache (see :mod:`handlers.search.ann`).
- ``writer.lock``: flock held by the one process that writes the space (the daemon).

SQLite (migration ``_m2_vectors`` in :mod:`harbord.catalog`) holds the id map: table
``vectors`` (one row per vector made live: ``seq``, ``space``, ``vector_id``, ``item_id``,
``vector_hash``, ``input_hash``, ``kind``, ``deleted``) and ``vectors_staged`` (appended by the
embed step, not yet committed by the index step). At most one non-deleted vector per item
and space.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import numpy as np
import structlog
from numpy.typing import NDArray
from sqlite_utils import Database

from handlers.search.ann import AnnIndex, AnnParams
from harbord.catalog import open_db
from harbord.errors import IndexInvalid, SpaceBusyError, VectorError
from harbord.fsio import try_lock, write_atomic
from harbord.groupdb import ImmediateDatabase

log = structlog.get_logger(__name__)

STORE = "vectors.f32"
SPACE_META = "space.json"
WRITER_LOCK = "writer.lock"
FORMAT = 1


def vector_hash(vector: NDArray[np.float32]) -> str:
    """BLAKE3 hex of a vector's float32 little-endian bytes (64 hex chars)."""
    return str(blake3.blake3(np.ascontiguousarray(vector, dtype="<f4").tobytes()).hexdigest())


def space_dir(state: Path, space: str) -> Path:
    """The folder of one embedding space: ``<state>/vectors/<space>``."""
    return Path(state) / "vectors" / space


def db_file(db: Database) -> str | None:
    """The file behind a sqlite-utils Database (None for an in-memory database)."""
    for row in db.execute("PRAGMA database_list").fetchall():
        if row[1] == "main":
            return str(row[2]) or None
    return None


class VectorStore:
    """The append-only float32 vector file of one space (see the module docstring).

    Open with :meth:`open` (creates the space when ``writable``). ``append`` is thread-safe;
    ``get`` may run concurrently with appends (it reads only complete rows).
    """

    def __init__(self, directory: Path, space: str, model_id: str, dim: int, writable: bool) -> None:
        self.directory = directory
        self.space = space
        self.model_id = model_id
        self.dim = dim
        self.row_bytes = dim * 4
        self.writable = writable
        self.path = directory / STORE
        self._lock = threading.Lock()
        self._map: np.memmap[Any, np.dtype[np.float32]] | None = None
        self._map_rows = 0
        self._fd: int | None = None
        if writable:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            size = os.fstat(self._fd).st_size
            torn = size % self.row_bytes
            if torn:
                log.warning("vector store torn tail cut", space=space, bytes=torn)
                os.ftruncate(self._fd, size - torn)
                os.fsync(self._fd)

    @classmethod
    def open(
        cls, directory: Path, *, space: str, model_id: str, dim: int | None, writable: bool = True
    ) -> VectorStore:
        """Open (and with ``writable`` create) the store in ``directory``.

        ``dim`` None means "whatever ``space.json`` says" (readers). Raises VectorError when
        the space exists with another dimension, or does not exist and cannot be created.
        """
        meta_path = directory / SPACE_META
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            meta = None
        except (OSError, ValueError) as err:
            raise VectorError(f"unreadable {meta_path}: {err}") from err
        if meta is None:
            if not writable or dim is None:
                raise VectorError(f"no vector space at {directory}")
            directory.mkdir(parents=True, exist_ok=True)
            meta = {"format": FORMAT, "space": space, "model_id": model_id, "dim": dim, "dtype": "<f4"}
            write_atomic(meta_path, json.dumps(meta, sort_keys=True).encode())
        if dim is not None and int(meta["dim"]) != dim:
            raise VectorError(
                f"vector space {directory} holds {meta['dim']}-d vectors of {meta.get('model_id')}, "
                f"the model gives {dim}-d; move the folder away to start a new space"
            )
        return cls(directory, str(meta.get("space", space)), str(meta.get("model_id", model_id)),
                   int(meta["dim"]), writable)

    @property
    def rows(self) -> int:
        """Complete rows in the file."""
        try:
            size = os.fstat(self._fd).st_size if self._fd is not None else self.path.stat().st_size
        except FileNotFoundError:
            return 0
        return size // self.row_bytes

    def append(self, vectors: NDArray[np.float32]) -> NDArray[np.int64]:
        """Append ``vectors`` (``(n, dim)`` float32) durably; returns their ids (``(n,)`` int64).

        Raises VectorError on a read-only store or a shape mismatch, OSError on I/O failure
        (nothing is handed out then; a partial row is cut off at the next open).
        """
        if self._fd is None:
            raise VectorError("vector store opened read-only")
        array = np.ascontiguousarray(vectors, dtype="<f4")
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise VectorError(f"expected (n, {self.dim}) vectors, got {array.shape}")
        data = array.tobytes()
        with self._lock:
            start = os.fstat(self._fd).st_size // self.row_bytes
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
        return np.arange(start, start + len(array), dtype=np.int64)

    def matrix(self) -> NDArray[np.float32]:
        """A read-only ``(rows, dim)`` float32 view of every complete row (memory-mapped)."""
        rows = self.rows
        if self._map is None or self._map_rows != rows:
            self._map = (np.memmap(self.path, dtype="<f4", mode="r", shape=(rows, self.dim))
                         if rows else None)
            self._map_rows = rows
        if self._map is None:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._map

    def get(self, ids: Sequence[int] | NDArray[np.int64]) -> NDArray[np.float32]:
        """Rows ``ids`` as a ``(len(ids), dim)`` float32 copy. Raises VectorError for an id
        past the end of the store."""
        ids_array = np.asarray(ids, dtype=np.int64)
        if len(ids_array) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        matrix = self.matrix()
        if ids_array.min() < 0 or ids_array.max() >= len(matrix):
            raise VectorError(f"vector id out of range 0..{len(matrix) - 1} in space {self.space}")
        return np.array(matrix[ids_array], dtype=np.float32)

    def close(self) -> None:
        """Release the file handle and map."""
        self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class Staged:
    """A vector the embed step appended for ``item_id`` (see :meth:`VectorSpace.stage`)."""

    vector_id: int
    item_id: int
    vector_hash: str
    input_hash: str
    kind: str


class VectorSpace:
    """The writer of one embedding space: store + hnswlib index + SQLite id map.

    Blocking and thread-safe (one lock); call it from worker threads
    (:func:`harbord.offload.io`). It uses its own SQLite connection to the catalog file, so its
    transactions never interleave with the event loop's. Open with :meth:`open`; one process
    at a time (``writer.lock``; :class:`SpaceBusyError` otherwise).

    Lifecycle of a vector: :meth:`stage` (append to the store + ``vectors_staged`` row; the
    embed step), :meth:`commit` (make it the item's live vector, replacing the previous one,
    and add it to the ANN; the index step), :meth:`delete_item`. :meth:`save` commits the
    index files; :meth:`close` saves and releases the lock.
    """

    def __init__(self, directory: Path, db_path: str, *, space: str, model_id: str, dim: int,
                 params: AnnParams) -> None:
        self.directory = directory
        self.space = space
        self.params = params
        self.db = ImmediateDatabase(open_db(db_path).conn)  # no read-to-write upgrades
        self._lock = threading.RLock()
        self._lock_fd: int | None = _take_writer_lock(directory)
        try:
            self.store = VectorStore.open(directory, space=space, model_id=model_id, dim=dim)
        except BaseException:
            os.close(self._lock_fd)
            self.db.conn.close()
            raise
        self.model_id = self.store.model_id
        self.dim = self.store.dim
        self.index = AnnIndex(self.dim, params)
        self.applied_seq = 0
        self.dirty = False
        self.last_load: str = ""

    @classmethod
    def open(cls, state: Path, db: Database | str | Path, *, space: str, model_id: str, dim: int,
             params: AnnParams, load: bool = True) -> VectorSpace:
        """Open the writer for ``space`` under ``state`` and bring its index up to date.

        ``db`` is the catalog (its file is reopened on a private connection) or its path.
        With ``load`` (default) it loads the saved index and replays what SQLite committed
        since (adds and deletes); a missing, stale or corrupt index is rebuilt from the vector
        store. With ``load=False`` the index starts empty (call :meth:`rebuild`). Raises
        SpaceBusyError, VectorError, CatalogError.
        """
        path = db_file(db) if isinstance(db, Database) else str(db)
        if path is None:
            raise VectorError("the vector space needs a file-backed catalog database")
        directory = space_dir(state, space)
        directory.mkdir(parents=True, exist_ok=True)
        self = cls(directory, path, space=space, model_id=model_id, dim=dim, params=params)
        try:
            if load:
                self.load()
        except BaseException:
            self.close(save=False)
            raise
        return self

    # SQLite helpers ------------------------------------------------------------------------
    def _live_row(self, item_id: int) -> dict[str, Any] | None:
        rows = list(self.db.query(
            "SELECT * FROM vectors WHERE space = ? AND item_id = ? AND deleted = 0",
            [self.space, item_id]))
        return rows[0] if rows else None

    def live(self, item_id: int) -> dict[str, Any] | None:
        """The item's live ``vectors`` row (dict) in this space, or None."""
        with self._lock:
            return self._live_row(item_id)

    def live_ids(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """``(vector_ids, seqs)`` of every live vector, int64 arrays in ``seq`` order."""
        rows = self.db.execute(
            "SELECT vector_id, seq FROM vectors WHERE space = ? AND deleted = 0 ORDER BY seq",
            [self.space]).fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        array = np.asarray(rows, dtype=np.int64)
        return array[:, 0].copy(), array[:, 1].copy()

    def _max_seq(self) -> int:
        row = self.db.execute("SELECT max(seq) FROM vectors WHERE space = ?", [self.space]).fetchone()
        return int(row[0] or 0)

    # load / rebuild ------------------------------------------------------------------------
    def load(self) -> str:
        """Load the saved index and reconcile it with SQLite, or rebuild; returns what happened
        (``"loaded"``, ``"repaired: ..."``, ``"rebuilt: <reason>"``)."""
        with self._lock:
            try:
                index, meta = AnnIndex.load(self.directory, self.dim, self.params)
                if int(meta.get("m", self.params.m)) != self.params.m:
                    raise IndexInvalid(f"stale: built with M={meta.get('m')}, config says {self.params.m}")
                rows = self.store.rows
                labels = index.labels()
                if labels and max(labels) >= rows:
                    raise IndexInvalid(f"stale: index has label {max(labels)}, store has {rows} rows")
            except IndexInvalid as err:
                self.rebuild(reason=err.reason)
                return self.last_load
            self.index = index
            added, removed = self._reconcile(labels)
            self.applied_seq = self._max_seq()
            if added or removed:
                self.dirty = True
                self.last_load = f"repaired: +{added} -{removed}"
                self.save()
            else:
                self.last_load = "loaded"
            log.info("vector index ready", space=self.space, state=self.last_load,
                     live=self.index.live_count)
            return self.last_load

    def _reconcile(self, labels: set[int]) -> tuple[int, int]:
        """Replay SQLite into the loaded index: add live vectors it lacks, delete the rest."""
        live, _seqs = self.live_ids()
        live_set = {int(x) for x in live}
        missing = np.array(sorted(live_set - labels), dtype=np.int64)
        revive = sorted(live_set & self.index.deleted)
        extra = sorted(labels - live_set - self.index.deleted)
        missing = self._drop_lost(missing)
        if len(missing) or revive:
            todo = np.concatenate([missing, np.array(revive, dtype=np.int64)])
            self.index.add(self.store.get(todo), todo)
        removed = self.index.mark_deleted(extra)
        return len(missing) + len(revive), removed

    def _drop_lost(self, ids: NDArray[np.int64]) -> NDArray[np.int64]:
        """Live ids past the end of the store (lost with a disk) are marked deleted in SQLite;
        their items need re-embedding. Returns the ids that exist."""
        rows = self.store.rows
        lost = [int(i) for i in ids if i >= rows]
        if lost:
            log.error("vectors missing from the store; items need re-embedding", space=self.space,
                      vector_ids=lost[:20], count=len(lost))
            with self.db.atomic():
                self.db.conn.executemany(
                    "UPDATE vectors SET deleted = 1, deleted_at = ? WHERE space = ? AND vector_id = ?",
                    [(time.time(), self.space, i) for i in lost])
        return ids[ids < rows]

    def rebuild(self, reason: str = "requested") -> int:
        """Build a fresh index from the store and SQLite's live ids, commit it; returns the
        number of vectors indexed."""
        with self._lock:
            live, _seqs = self.live_ids()
            live = self._drop_lost(live)
            started = time.perf_counter()
            self.index = AnnIndex.build(self.dim, self.params, self.store.get(live), live)
            self.applied_seq = self._max_seq()
            self.dirty = True
            self.save()
            self.last_load = f"rebuilt: {reason}"
            log.info("vector index rebuilt", space=self.space, reason=reason, vectors=len(live),
                     seconds=round(time.perf_counter() - started, 3))
            return len(live)

    # writes --------------------------------------------------------------------------------
    def stage(self, item_id: int, vectors: NDArray[np.float32], input_hashes: Sequence[str],
              kind: str = "text") -> list[Staged]:
        """Append vectors for one item (the embed step) and record them as staged.

        ``vectors`` is ``(n, dim)`` float32 with unit rows, ``input_hashes`` one hash per row
        (what was embedded), ``kind`` the modality. Returns one :class:`Staged` per row. The
        store append is fsync'd before SQLite records it, so a staged id always has its bytes.
        """
        return self.stage_many([item_id] * len(vectors), vectors, input_hashes, [kind] * len(vectors))

    def stage_many(self, item_ids: Sequence[int], vectors: NDArray[np.float32],
                   input_hashes: Sequence[str], kinds: Sequence[str]) -> list[Staged]:
        """Like :meth:`stage` with one item id and kind per row (a batch from several jobs)."""
        ids = self.store.append(vectors)
        staged = [Staged(int(vid), int(item), vector_hash(vec), ih, kind)
                  for vid, item, vec, ih, kind in zip(ids, item_ids, vectors, input_hashes, kinds,
                                                      strict=True)]
        now = time.time()
        with self._lock, self.db.atomic():
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO vectors_staged(space, vector_id, item_id, vector_hash, "
                "input_hash, kind, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(self.space, s.vector_id, s.item_id, s.vector_hash, s.input_hash, s.kind, now)
                 for s in staged])
        return staged

    def commit(self, requests: Sequence[tuple[int, int]]) -> list[int | None]:
        """Make staged vectors live (the index step), a batch at a time.

        ``requests`` are ``(item_id, vector_id)`` pairs. For each: a vector that is already live
        is kept; a staged vector whose hash equals the item's live vector is dropped and the
        live id kept (idempotent re-runs); otherwise the staged vector replaces the item's
        live vector (old one marked deleted in SQLite and the ANN). Returns the item's live
        vector id per request (None when the vector was superseded and the item has none).
        One SQLite transaction, then one ANN ``add_items`` call. Raises VectorError for a
        vector id that is neither staged nor committed.
        """
        results: list[int | None] = []
        adds: list[int] = []
        deletes: list[int] = []
        now = time.time()
        with self._lock:
            with self.db.atomic():
                for item_id, vector_id in requests:
                    results.append(self._commit_one(item_id, vector_id, now, adds, deletes))
            self._apply(adds, deletes)
        return results

    def _commit_one(self, item_id: int, vector_id: int, now: float, adds: list[int],
                    deletes: list[int]) -> int | None:
        row = self.db.execute(
            "SELECT item_id, deleted FROM vectors WHERE space = ? AND vector_id = ?",
            [self.space, vector_id]).fetchone()
        if row is not None:
            if int(row[0]) != item_id:
                raise VectorError(f"vector {vector_id} belongs to item {row[0]}, not {item_id}")
            if not row[1]:
                return vector_id
            live = self._live_row(item_id)
            return int(live["vector_id"]) if live else None
        staged = self.db.execute(
            "SELECT item_id, vector_hash, input_hash, kind FROM vectors_staged "
            "WHERE space = ? AND vector_id = ?", [self.space, vector_id]).fetchone()
        if staged is None:
            raise VectorError(f"vector {vector_id} of space {self.space} was never staged")
        if int(staged[0]) != item_id:
            raise VectorError(f"staged vector {vector_id} belongs to item {staged[0]}, not {item_id}")
        self.db.execute("DELETE FROM vectors_staged WHERE space = ? AND vector_id = ?",
                        [self.space, vector_id])
        live = self._live_row(item_id)
        if live is not None and live["vector_hash"] == staged[1]:
            return int(live["vector_id"])
        if live is not None:
            self.db.execute("UPDATE vectors SET deleted = 1, deleted_at = ? WHERE seq = ?",
                            [now, live["seq"]])
            deletes.append(int(live["vector_id"]))
        self.db.execute(
            "INSERT INTO vectors(space, vector_id, item_id, vector_hash, input_hash, kind, deleted, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
            [self.space, vector_id, item_id, staged[1], staged[2], staged[3], now])
        adds.append(vector_id)
        return vector_id

    def _apply(self, adds: list[int], deletes: list[int]) -> None:
        """Mirror a committed SQLite batch into the ANN and advance ``applied_seq``."""
        if adds:
            ids = np.asarray(adds, dtype=np.int64)
            self.index.add(self.store.get(ids), ids)
        if deletes:
            self.index.mark_deleted(deletes)
        if adds or deletes:
            self.applied_seq = self._max_seq()
            self.dirty = True

    def delete_item(self, item_id: int) -> int | None:
        """Delete the item's live vector (SQLite + ANN); returns its id or None if it had none."""
        with self._lock:
            with self.db.atomic():
                live = self._live_row(item_id)
                if live is None:
                    return None
                self.db.execute("UPDATE vectors SET deleted = 1, deleted_at = ? WHERE seq = ?",
                                [time.time(), live["seq"]])
            self._apply([], [int(live["vector_id"])])
            return int(live["vector_id"])

    # persistence ---------------------------------------------------------------------------
    def save(self, force: bool = False) -> bool:
        """Commit the index files if anything changed (or ``force``); returns True if saved.

        Raises OSError when the disk refuses (the previous save stays current).
        """
        with self._lock:
            if not (self.dirty or force):
                return False
            self.index.save(self.directory, {
                "space": self.space,
                "model_id": self.model_id,
                "applied_seq": self.applied_seq,
                "store_rows": self.store.rows,
                "live": self.index.live_count,
            })
            self.dirty = False
            return True

    def close(self, save: bool = True) -> None:
        """Save (unless ``save`` is False), close the SQLite connection and release the lock."""
        with self._lock:
            try:
                if save and getattr(self, "index", None) is not None:
                    self.save()
            finally:
                if getattr(self, "store", None) is not None:
                    self.store.close()
                with contextlib.suppress(sqlite3.Error):
                    self.db.conn.close()
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None


def _take_writer_lock(directory: Path) -> int:
    """The descriptor holding ``writer.lock`` (held for the writer's life; ``os.close`` it).
    Raises SpaceBusyError at once if another process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = try_lock(directory / WRITER_LOCK)
    if fd is None:
        raise SpaceBusyError(f"another process writes {directory} (is the daemon running?)")
    return fd


def iter_spaces(state: Path) -> Iterable[Path]:
    """Folders of every embedding space under ``<state>/vectors``."""
    root = Path(state) / "vectors"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / SPACE_META).exists())
