"""The durable job table: enqueue, claim, advance, finish, fail, retry, dead.

A row is the truth about one file's progress: ``state`` is one of

- ``pending``  waiting for a worker (``next_attempt_at`` may delay it),
- ``running``  claimed by a worker (``owner``: its process's pid and start time); at start-up,
               rows of processes that are gone go back to pending,
- ``done``     finished, ``outcome`` = ingested | duplicate | ignored,
- ``failed``   a permanent error (no automatic retry), or a retryable one waiting for its
               backoff (``next_attempt_at`` set),
- ``dead``     a retryable error that used up ``max_attempts``; stays until ``harbord retry``.

``stage`` is the index of the next handler to run and ``record`` the Job as JSON, both updated
after every stage in one transaction, so a crash resumes where it stopped.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from harbord.job import Action, Job, JobSource
from harbord.pathtext import display, from_db, to_db
from harbord.procs import process_alive, process_start_ticks, process_token

if TYPE_CHECKING:
    from harbord.config import PipelineConfig

__all__ = ["Claimed", "JobQueue", "backoff_seconds", "process_alive", "process_start_ticks",
           "process_token"]

STATES = ("pending", "running", "done", "failed", "dead")


@dataclass(frozen=True)
class Claimed:
    """A job a worker holds: its id, the next stage index and the record."""

    job_id: str
    stage: int
    job: Job


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """Delay before retry number ``attempts`` (1-based): ``base * 2**(attempts-1)``, capped."""
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


class JobQueue:
    """Job table operations; every write is one transaction."""

    def __init__(
        self, db: Database, max_attempts: int = 5, retry_base: float = 30.0, retry_cap: float = 3600.0
    ) -> None:
        self.db = db
        self.owner = process_token()
        """This process, as written into the rows it claims."""
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.retry_cap = retry_cap

    @classmethod
    def for_config(cls, db: Database, pipeline: PipelineConfig) -> JobQueue:
        """The job table on ``db`` with the ``[pipeline]`` retry settings (``max_attempts``,
        ``retry_base_seconds``, ``retry_max_seconds``)."""
        return cls(db, pipeline.max_attempts, pipeline.retry_base_seconds, pipeline.retry_max_seconds)

    def enqueue(
        self,
        path: str,
        size: int,
        mtime: float,
        *,
        source: JobSource = "inbox",
        watch_root: str | None = None,
        action: Action = "move",
    ) -> tuple[str, bool]:
        """Add a job for a settled file (size in bytes, mtime in seconds).

        Returns ``(job_id, created)``. The same unchanged file (path, size, mtime) makes one
        job: a second call returns the first job's id with ``created=False``, whatever its state.
        """
        now = time.time()
        job_id = uuid.uuid4().hex
        job = Job(id=job_id, path=path, source=source, watch_root=watch_root, size=size,
                  mtime=mtime, action=action)
        cur = self.db.execute(
            "INSERT OR IGNORE INTO jobs(id, path, size, mtime, source, state, stage, record, "
            "attempts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, 0, ?, ?)",
            [job_id, to_db(path), size, mtime, source, job.to_json(), now, now],
        )
        if cur.rowcount == 1:
            return job_id, True
        row = self.db.execute(
            "SELECT id FROM jobs WHERE path = ? AND size = ? AND mtime = ?", [to_db(path), size, mtime]
        ).fetchone()
        return str(row[0]), False

    def claim(self, only: set[str] | None = None) -> Claimed | None:
        """Atomically take the oldest runnable job and mark it running: a pending one (oldest
        first, whose ``next_attempt_at`` has passed if set), else a failed one whose retry is due.
        ``only`` limits to these ids.

        The pending job comes from walking the ``jobs_claim(state, created_at)`` index; ``only``
        is applied in Python to the rows in claim order (the first is normally a match) rather
        than as an ``id IN (...)`` list, which bound one parameter per queued file per claim.
        A claim with 2,000 queued takes ~0.05 ms here.
        """
        if only is not None and not only:
            return None
        now = time.time()
        queries = (
            "SELECT id FROM jobs WHERE state = 'pending' AND (next_attempt_at IS NULL OR "
            "next_attempt_at <= :now) ORDER BY state, created_at",
            "SELECT id FROM jobs WHERE state = 'failed' AND next_attempt_at IS NOT NULL AND "
            "next_attempt_at <= :now ORDER BY created_at, rowid",
        )
        with self.db.atomic():
            job_id = None
            for sql in queries:
                cur = self.db.execute(sql + (" LIMIT 1" if only is None else ""), {"now": now})
                try:
                    job_id = next((row[0] for row in cur if only is None or row[0] in only), None)
                finally:
                    cur.close()
                if job_id is not None:
                    break
            if job_id is None:
                return None
            got = self.db.execute(
                "UPDATE jobs SET state = 'running', owner = ?, updated_at = ? WHERE id = ? "
                "RETURNING id, stage, record",
                [self.owner, now, job_id],
            ).fetchone()
        return Claimed(got[0], int(got[1]), Job.from_json(got[2]))

    def advance(self, job_id: str, stage: int, job: Job) -> None:
        """Record that stages before ``stage`` are done and ``job`` is what they produced."""
        self.db.execute(
            "UPDATE jobs SET stage = ?, record = ?, updated_at = ? WHERE id = ?",
            [stage, job.to_json(), time.time(), job_id],
        )

    def finish(self, job_id: str, outcome: str, job: Job, stage: int | None = None) -> None:
        """Mark a job done with ``outcome`` (ingested, duplicate, ignored).

        ``stage``: also record it as the next stage, so the last stage's :meth:`advance` and
        the outcome are one transaction (one write instead of two per ingested file).
        """
        self.db.execute(
            "UPDATE jobs SET state = 'done', outcome = ?, record = ?, stage = coalesce(?, stage), "
            "last_error = NULL, next_attempt_at = NULL, updated_at = ? WHERE id = ?",
            [outcome, job.to_json(), stage, time.time(), job_id],
        )

    def fail(self, job_id: str, error: str, *, retryable: bool, restart: Job | None = None) -> str:
        """Record a failure; returns the new state.

        Retryable: ``failed`` with ``next_attempt_at`` = now + backoff, or ``dead`` once
        ``max_attempts`` is reached. Permanent: ``failed`` with no automatic retry.
        ``restart``: the retry starts over at stage 0 with this record (the file under the
        job's path was replaced).
        """
        now = time.time()
        with self.db.atomic():
            row = self.db.execute("SELECT attempts FROM jobs WHERE id = ?", [job_id]).fetchone()
            attempts = int(row[0]) + 1 if row else 1
            if retryable and attempts < self.max_attempts:
                state = "failed"
                next_at: float | None = now + backoff_seconds(attempts, self.retry_base, self.retry_cap)
            elif retryable:
                state, next_at = "dead", None
            else:
                state, next_at = "failed", None
            self.db.execute(
                "UPDATE jobs SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?, "
                "outcome = 'failed', updated_at = ? WHERE id = ?",
                [state, attempts, next_at, display(error), now, job_id],
            )
            if restart is not None:
                self.db.execute("UPDATE jobs SET stage = 0, record = ? WHERE id = ?",
                                [restart.to_json(), job_id])
        return state

    def release(self, job_id: str) -> None:
        """Put a running job back to pending (a clean shutdown parking its stage)."""
        self.db.execute(
            "UPDATE jobs SET state = 'pending', updated_at = ? WHERE id = ? AND state = 'running'",
            [time.time(), job_id],
        )

    def recover(self) -> int:
        """At start-up: rows left ``running`` by a process that is gone (crashed, killed) go back
        to ``pending``; the jobs of a live process (``harbord ingest`` running beside) are left
        to it. Returns how many were put back."""
        return self._put_back(foreign_only=False)

    def recheck(self) -> int:
        """While running: jobs other processes left ``running`` and that are gone now (killed,
        a zombie) go back to ``pending``; this process's own are left alone. Returns how many."""
        return self._put_back(foreign_only=True)

    def _put_back(self, *, foreign_only: bool) -> int:
        """``running`` rows whose owner is not alive go back to ``pending``; ``foreign_only``
        skips this process's own (at start-up its pid may be a dead process's reused one)."""
        where = "state = 'running'" + (" AND owner IS NOT ?" if foreign_only else "")
        with self.db.atomic():
            rows = self.db.execute(f"SELECT id, owner FROM jobs WHERE {where}",
                                   [self.owner] if foreign_only else []).fetchall()
            orphans = [job_id for job_id, owner in rows if not process_alive(owner)]
            for start in range(0, len(orphans), 500):
                chunk = orphans[start:start + 500]
                self.db.execute(
                    f"UPDATE jobs SET state = 'pending', owner = NULL, updated_at = ? "
                    f"WHERE id IN ({', '.join('?' for _ in chunk)}) AND state = 'running'",
                    [time.time(), *chunk],
                )
        return len(orphans)

    def running_elsewhere(self, rows: Sequence[dict[str, Any]]) -> bool:
        """True if any of these job rows is ``running`` in another live process."""
        return any(row["state"] == "running" and process_alive(row.get("owner")) for row in rows)

    def retry(self, job_id: str | None = None, states: tuple[str, ...] = ()) -> list[str]:
        """Reset jobs to pending with zero attempts: one id, or every job in ``states``
        (``failed`` and/or ``dead``). Returns the ids reset."""
        if job_id is not None:
            where, params = "id = ? AND state IN ('failed', 'dead')", [job_id]
        else:
            if not states:
                return []
            where = f"state IN ({', '.join('?' for _ in states)})"
            params = list(states)
        with self.db.atomic():
            ids = [r[0] for r in self.db.execute(f"SELECT id FROM jobs WHERE {where}", params)]
            self.db.execute(
                f"UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = NULL, "
                f"updated_at = ? WHERE {where}", [time.time(), *params]
            )
        return ids

    def counts(self) -> dict[str, int]:
        """``{"pending": n, "running": n, "done": n, "failed": n, "dead": n}``."""
        out = dict.fromkeys(STATES, 0)
        for state, n in self.db.execute("SELECT state, count(*) FROM jobs GROUP BY state"):
            out[state] = int(n)
        return out

    def outcome_counts(self) -> dict[str, int]:
        """Done jobs by outcome: ``{"ingested": n, "duplicate": n, "ignored": n}``."""
        out = {"ingested": 0, "duplicate": 0, "ignored": 0}
        for outcome, n in self.db.execute(
            "SELECT outcome, count(*) FROM jobs WHERE state = 'done' GROUP BY outcome"
        ):
            out[str(outcome)] = int(n)
        return out

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job row as a dict (``record`` decoded to a Job), or None."""
        rows = list(self.db.query("SELECT * FROM jobs WHERE id = ?", [job_id]))
        if not rows:
            return None
        row = rows[0]
        row["record"] = Job.from_json(row["record"])
        row["path"] = from_db(row["path"])
        return row

    def get_many(self, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """:meth:`get` for many ids at once (one query per 500 ids): id -> row; unknown ids are
        left out."""
        out: dict[str, dict[str, Any]] = {}
        ids = list(job_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            cur = self.db.execute(
                f"SELECT * FROM jobs WHERE id IN ({', '.join('?' for _ in chunk)})", chunk
            )
            names = [d[0] for d in cur.description]
            for values in cur:
                row = dict(zip(names, values, strict=True))
                row["record"] = Job.from_json(row["record"])
                row["path"] = from_db(row["path"])
                out[row["id"]] = row
        return out

    def recent_failures(self, limit: int = 10) -> list[dict[str, Any]]:
        """Latest failed/dead jobs: ``[{"job_id", "path", "state", "attempts", "error",
        "next_attempt_at"}]``, newest first."""
        return [
            {"job_id": r[0], "path": from_db(r[1]), "state": r[2], "attempts": r[3], "error": r[4],
             "next_attempt_at": r[5]}
            for r in self.db.execute(
                "SELECT id, path, state, attempts, last_error, next_attempt_at FROM jobs "
                "WHERE state IN ('failed', 'dead') ORDER BY updated_at DESC LIMIT ?", [limit]
            )
        ]

    def next_due(self) -> float | None:
        """Seconds until the earliest scheduled (re)try, 0 if one is due now, None if none."""
        row = self.db.execute(
            "SELECT min(next_attempt_at) FROM jobs WHERE next_attempt_at IS NOT NULL AND "
            "state IN ('pending', 'failed')"
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return max(0.0, float(row[0]) - time.time())

    def known(self, path: str, size: int, mtime: float) -> bool:
        """True if a job exists for this unchanged file."""
        return self.db.execute(
            "SELECT 1 FROM jobs WHERE path = ? AND size = ? AND mtime = ?", [to_db(path), size, mtime]
        ).fetchone() is not None
