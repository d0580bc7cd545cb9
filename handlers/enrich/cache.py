"""The persistent response cache and the daily request budgets of the providers (SQLite,
tables ``enrich_cache`` and ``enrich_budget``, :mod:`handlers.enrich.schema`).

Every provider answer is kept with a time to live: ``ok`` answers ``[enrich] cache_ttl_days``,
``not_found`` answers ``negative_ttl_days``; errors (timeouts, 5xx, 429, a bad key) are never
cached. The cache is shared by every worker of the daemon (one database) and survives
restarts, so a re-ingest, a re-enrich or a restart makes no request for what is known.

Calls run on the thread that owns ``db`` (the daemon's event loop thread); providers do their
HTTP in worker threads and hand the text back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlite_utils import Database

Status = Literal["ok", "not_found"]
DAY_SECONDS = 86400.0


@dataclass(frozen=True)
class Cached:
    """One cached answer: ``status``, ``body`` (the response text), ``fetched_at`` (seconds
    since the epoch)."""

    status: Status
    body: str
    fetched_at: float


class ResponseCache:
    """Provider responses by ``(provider, key)``; ``key`` is the request without credentials
    (e.g. ``"movie/603?append_to_response=credits&language=en-US"``)."""

    def __init__(self, db: Database, ttl_days: float = 30.0, negative_ttl_days: float = 1.0) -> None:
        self.db = db
        self.ttl = ttl_days * DAY_SECONDS
        self.negative_ttl = negative_ttl_days * DAY_SECONDS
        self.hits = 0
        self.misses = 0

    def get(self, provider: str, key: str, now: float | None = None) -> Cached | None:
        """The unexpired answer for ``key``, or None (counted as a hit or a miss)."""
        now = time.time() if now is None else now
        row = self.db.execute(
            "SELECT status, body, fetched_at FROM enrich_cache WHERE provider = ? AND key = ? "
            "AND expires_at > ?", [provider, key, now]).fetchone()
        if row is None:
            self.misses += 1
            self._count("cache_miss", now)
            return None
        self.hits += 1
        self._count("cache_hit", now)
        return Cached(status=row[0], body=row[1], fetched_at=float(row[2]))

    def _count(self, name: str, now: float) -> None:
        self.db.execute("INSERT INTO enrich_counters(name, day, n) VALUES (?, ?, 1) "
                        "ON CONFLICT(name, day) DO UPDATE SET n = n + 1", [name, utc_day(now)])

    def hit_rate(self) -> float | None:
        """Cache hits / lookups over every day counted, or None before the first lookup."""
        counts = dict(self.db.execute("SELECT name, sum(n) FROM enrich_counters GROUP BY name").fetchall())
        hits, misses = int(counts.get("cache_hit") or 0), int(counts.get("cache_miss") or 0)
        return hits / (hits + misses) if hits + misses else None

    def put(self, provider: str, key: str, status: Status, body: str, now: float | None = None) -> None:
        """Keep ``body`` as the answer for ``key`` for the TTL of ``status``."""
        now = time.time() if now is None else now
        ttl = self.ttl if status == "ok" else self.negative_ttl
        self.db.execute(
            "INSERT INTO enrich_cache(provider, key, status, body, fetched_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(provider, key) DO UPDATE SET "
            "status = excluded.status, body = excluded.body, fetched_at = excluded.fetched_at, "
            "expires_at = excluded.expires_at", [provider, key, status, body, now, now + ttl])

    def forget(self, provider: str | None = None) -> int:
        """Drop cached answers (of one provider, or all): ``enrich --refresh``. Returns the count."""
        if provider is None:
            cur = self.db.execute("DELETE FROM enrich_cache")
        else:
            cur = self.db.execute("DELETE FROM enrich_cache WHERE provider = ?", [provider])
        return int(cur.rowcount or 0)


def utc_day(now: float | None = None) -> str:
    """The UTC date ``YYYY-MM-DD`` of ``now`` (seconds since the epoch; default: now)."""
    return datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y-%m-%d")


class DailyBudget:
    """At most ``limit`` requests per UTC day for ``provider`` (OMDb's free key allows 1,000 a
    day: https://www.omdbapi.com/apikey.aspx), counted in SQLite so restarts share the count."""

    def __init__(self, db: Database, provider: str, limit: int) -> None:
        self.db = db
        self.provider = provider
        self.limit = limit

    def used(self, now: float | None = None) -> int:
        """Requests counted today."""
        row = self.db.execute("SELECT used FROM enrich_budget WHERE provider = ? AND day = ?",
                              [self.provider, utc_day(now)]).fetchone()
        return int(row[0]) if row else 0

    def take(self, now: float | None = None) -> bool:
        """Count one request if today's budget allows it; False when it is spent."""
        day = utc_day(now)
        cur = self.db.execute(
            "INSERT INTO enrich_budget(provider, day, used) VALUES (?, ?, 1) "
            "ON CONFLICT(provider, day) DO UPDATE SET used = used + 1 WHERE used < ?",
            [self.provider, day, self.limit]) if self.limit > 0 else None
        return cur is not None and (cur.rowcount or 0) == 1
