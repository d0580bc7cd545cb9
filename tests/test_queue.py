"""The durable job table on a real SQLite file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlite_utils import Database

from harbord.catalog import open_db
from harbord.job import Job
from harbord.queue import JobQueue, backoff_seconds, process_alive, process_start_ticks
from tests.support.waits import wait_until


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return open_db(tmp_path / "h.db")


def test_same_unchanged_file_makes_one_job(db: Database) -> None:
    queue = JobQueue(db)
    first, created = queue.enqueue("/in/a.mkv", 10, 1.5)
    again, created_again = queue.enqueue("/in/a.mkv", 10, 1.5)
    changed, created_changed = queue.enqueue("/in/a.mkv", 11, 2.5)
    assert created and not created_again and created_changed
    assert first == again != changed
    assert queue.counts()["pending"] == 2


def test_claim_advance_finish_and_resume_after_crash(tmp_path: Path) -> None:
    db = open_db(tmp_path / "h.db")
    queue = JobQueue(db)
    job_id, _ = queue.enqueue("/in/a.mkv", 10, 1.0)
    claimed = queue.claim()
    assert claimed is not None and claimed.job_id == job_id and claimed.stage == 0
    assert queue.claim() is None  # running jobs are not claimed twice
    queue.advance(job_id, 2, Job(id=job_id, path="/in/a.mkv", file_hash="ab" * 32))
    db.close()
    # "crash": reopen, running -> pending, resumes at stage 2 with the recorded Job
    queue = JobQueue(open_db(tmp_path / "h.db"))
    assert queue.recover() == 1
    again = queue.claim()
    assert again is not None and again.stage == 2 and again.job.file_hash == "ab" * 32
    queue.finish(job_id, "ingested", again.job)
    assert queue.counts() == {"pending": 0, "running": 0, "done": 1, "failed": 0, "dead": 0}
    assert queue.outcome_counts()["ingested"] == 1


def test_recover_leaves_the_jobs_of_a_live_process_alone(tmp_path: Path) -> None:
    # Another process (as `harbord ingest` beside a starting daemon) claims a job and lives on.
    script = (
        "import sys, time\n"
        "from harbord.catalog import open_db\n"
        "from harbord.queue import JobQueue\n"
        "queue = JobQueue(open_db(sys.argv[1]))\n"
        "queue.enqueue('/in/b.mkv', 10, 1.0)\n"
        "assert queue.claim() is not None\n"
        "print('claimed', flush=True)\n"
        "time.sleep(60)\n"
    )
    other = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "h.db")],
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "claimed"
        queue = JobQueue(open_db(tmp_path / "h.db"))
        assert queue.recover() == 0 and queue.counts()["running"] == 1
        [job_id] = [row["id"] for row in queue.db.query("SELECT id FROM jobs")]
        assert queue.running_elsewhere(list(queue.get_many([job_id]).values()))
    finally:
        other.kill()
        other.wait()
    assert queue.recover() == 1 and queue.counts()["pending"] == 1  # its process is gone


def test_retryable_backs_off_then_dies(db: Database) -> None:
    queue = JobQueue(db, max_attempts=3, retry_base=0.05, retry_cap=10)
    job_id, _ = queue.enqueue("/in/a.mkv", 1, 1.0)
    assert queue.claim() is not None
    assert queue.fail(job_id, "network down", retryable=True) == "failed"
    assert queue.claim() is None  # not before its backoff
    due = queue.next_due()
    assert due is not None and 0 < due <= 0.05
    assert wait_until(queue.claim, 5, 0.01) is not None  # once the backoff is over
    assert queue.fail(job_id, "network down", retryable=True) == "failed"
    assert queue.claim() is None
    due = queue.next_due()
    assert due is not None and 0.05 < due <= 0.1  # second backoff doubles
    assert wait_until(queue.claim, 5, 0.01) is not None
    assert queue.fail(job_id, "network down", retryable=True) == "dead"
    row = queue.get(job_id)
    assert row is not None and row["attempts"] == 3 and row["last_error"] == "network down"
    assert queue.claim() is None
    assert queue.retry(states=("dead",)) == [job_id]
    assert queue.claim() is not None


def test_permanent_failure_is_not_retried_automatically(db: Database) -> None:
    queue = JobQueue(db, retry_base=0.01)
    job_id, _ = queue.enqueue("/in/bad.mkv", 1, 1.0)
    queue.claim()
    assert queue.fail(job_id, "corrupt", retryable=False) == "failed"
    # A retryable failure after it, on the same backoff: once that one is due again, the
    # permanent one would have been too, had it been scheduled.
    other, _ = queue.enqueue("/in/flaky.mkv", 1, 1.0)
    assert queue.claim(only={other}) is not None
    assert queue.fail(other, "network down", retryable=True) == "failed"
    assert wait_until(lambda: queue.claim(only={other}), 5, 0.01) is not None
    assert queue.claim() is None
    assert queue.recent_failures()[0]["error"] == "corrupt"
    assert queue.retry(job_id) == [job_id]
    assert queue.claim() is not None


def test_claim_only_restricts_to_ids(db: Database) -> None:
    queue = JobQueue(db)
    a, _ = queue.enqueue("/in/a", 1, 1.0)
    b, _ = queue.enqueue("/in/b", 1, 1.0)
    got = queue.claim(only={b})
    assert got is not None and got.job_id == b
    assert queue.claim(only=set()) is None
    assert queue.claim(only={b}) is None
    rest = queue.claim()
    assert rest is not None and rest.job_id == a


def test_backoff_doubles_and_caps() -> None:
    assert [backoff_seconds(n, 30, 100) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]


async def test_chain_passes_skip_through_and_wraps_unexpected_errors() -> None:
    from typing import ClassVar

    from harbord.chain import run_chain
    from harbord.errors import PermanentError, Skip

    class Dup:
        name: ClassVar[str] = "dup"

        async def handle(self, job: Job) -> Job:
            raise Skip("duplicate", "same content", job)

    class Boom:
        name: ClassVar[str] = "boom"

        async def handle(self, job: Job) -> Job:
            raise KeyError("x")

    job = Job(id="j1", path="/in/a.mkv")
    with pytest.raises(Skip):
        await run_chain([Dup()], job)
    with pytest.raises(PermanentError) as info:
        await run_chain([Boom()], job)
    assert info.value.handler == "boom" and info.value.path == "/in/a.mkv"
    assert "KeyError" in str(info.value)


def test_a_reused_pid_does_not_keep_a_dead_owner_s_jobs(db: Database) -> None:
    # pid 1 is alive, but started long before this token's (made-up) start time: another process.
    queue = JobQueue(db)
    job_id, _ = queue.enqueue("/in/c.mkv", 10, 1.0)
    assert queue.claim() is not None
    db.execute("UPDATE jobs SET owner = '1:99999999999' WHERE id = ?", [job_id])
    assert not process_alive("1:99999999999") and process_alive(f"1:{process_start_ticks(1)}")
    assert queue.recover() == 1
