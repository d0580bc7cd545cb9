"""The enrich capability's tables, on its own version track (``schema_versions``, capability ``enrich``).

- ``enrich_cache(provider, key, status, body, fetched_at, expires_at)``: provider responses
  (``status`` ``ok`` or ``not_found``; ``body`` the JSON or XML text), reused until
  ``expires_at`` (seconds since the epoch), so a restart or a re-enrich asks nothing known.
- ``enrich_budget(provider, day, used)``: requests made per UTC day (OMDb's daily budget).
- ``enrich_state(item_id, status, pin, candidates, why, attempts, next_attempt_at, last_error,
  updated_at)``: each item's enrichment: ``status`` ``done``, ``pending`` (retried in the
  background with backoff), ``needs_review`` (candidates stored, nothing applied) or ``none``;
  ``pin`` the identity a person chose (``{"tmdb": 603}``), used by every refresh.
- ``soundtracks(item_id, source, release_group_id, tracks, updated_at)``: a film's soundtrack,
  from MusicBrainz or entered by a person (``source = 'user'``, never replaced by a refresh).
"""

from __future__ import annotations

from sqlite_utils import Database

from harbord.capability import Migration


def _v1_tables(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS enrich_cache (
            provider TEXT NOT NULL, key TEXT NOT NULL, status TEXT NOT NULL, body TEXT NOT NULL,
            fetched_at REAL NOT NULL, expires_at REAL NOT NULL,
            PRIMARY KEY(provider, key)
        );
        CREATE TABLE IF NOT EXISTS enrich_budget (
            provider TEXT NOT NULL, day TEXT NOT NULL, used INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY(provider, day)
        );
        CREATE TABLE IF NOT EXISTS enrich_state (
            item_id INTEGER PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
            status TEXT NOT NULL, pin TEXT, candidates TEXT NOT NULL DEFAULT '[]', why TEXT,
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL, last_error TEXT,
            updated_at REAL NOT NULL
        );
        CREATE INDEX IF NOT EXISTS enrich_state_due ON enrich_state(status, next_attempt_at);
        CREATE TABLE IF NOT EXISTS soundtracks (
            item_id INTEGER PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
            source TEXT NOT NULL, release_group_id TEXT, tracks TEXT NOT NULL DEFAULT '[]',
            updated_at REAL NOT NULL
        );
        """
    )


def _v2_counters(db: Database) -> None:
    """``enrich_counters(name, day, n)``: cache hits and misses per UTC day
    (``cache_hit``/``cache_miss``), for ``harbord enrich --stats``."""
    db.execute("CREATE TABLE IF NOT EXISTS enrich_counters (name TEXT NOT NULL, day TEXT NOT NULL, "
               "n INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(name, day))")


MIGRATIONS: tuple[Migration, ...] = (_v1_tables, _v2_counters)
"""Append, never edit a released one."""
