"""The search capability's tables, on its own version track (``schema_versions``, capability ``search``)."""

from __future__ import annotations

from sqlite_utils import Database

from harbord.capability import Migration


def _v1_vectors(db: Database) -> None:
    """Embedding vectors: the id map of each space's vector store and ANN index.

    ``vectors``: one row per vector made live (``seq`` grows with every commit, so a reader
    can find the vectors added after an index was saved); ``vector_id`` is the row number in
    ``<paths.state>/vectors/<space>/vectors.f32`` and the hnswlib label; ``vector_hash`` is the
    BLAKE3 hex of the float32 bytes and ``input_hash`` of what was embedded (model + text or
    file); at most one non-deleted vector per item and space. ``vectors_staged``: vectors the
    embed step appended that the index step has not committed yet.

    ``IF NOT EXISTS``: a catalog made before capabilities had their own track has these tables
    from the core's migration 2 (same statements), and keeps them and their rows.
    """
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS vectors (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            space TEXT NOT NULL, vector_id INTEGER NOT NULL,
            item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
            vector_hash TEXT NOT NULL, input_hash TEXT NOT NULL, kind TEXT NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, deleted_at REAL,
            UNIQUE(space, vector_id)
        );
        CREATE UNIQUE INDEX IF NOT EXISTS vectors_live ON vectors(space, item_id) WHERE deleted = 0;
        CREATE INDEX IF NOT EXISTS vectors_item ON vectors(item_id);
        CREATE TABLE IF NOT EXISTS vectors_staged (
            space TEXT NOT NULL, vector_id INTEGER NOT NULL,
            item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
            vector_hash TEXT NOT NULL, input_hash TEXT NOT NULL, kind TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY(space, vector_id)
        );
        """
    )


MIGRATIONS: tuple[Migration, ...] = (_v1_vectors,)
"""Append, never edit a released one."""
