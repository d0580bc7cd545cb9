"""kill -9 at random moments over a 200-file batch (move and copy), and a library that runs
out of space (issue 10). Real daemon processes, real files, a real tmpfs where it can be
mounted (else ``RLIMIT_FSIZE``)."""

from __future__ import annotations

import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import blake3
import pytest

from tests.support.daemon_proc import DaemonProc
from tests.support.media import make_mp4
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow

FILES = 200
KILLS = 20


def _b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def _batch(folder: Path, template: bytes, count: int) -> dict[str, str]:
    """``count`` distinct media files (unique tails) in ``folder``: BLAKE3 -> name."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(count):
        data = template + f"{i:064d}".encode()
        (folder / f"clip.{i:04d}.mp4").write_bytes(data)
        out[_b3(data)] = f"clip.{i:04d}.mp4"
    return out


@pytest.mark.parametrize("action", ["move", "copy"])
def test_kill_9_twenty_times_over_a_batch_loses_nothing_and_stores_each_once(
    tmp_path: Path, action: str
) -> None:
    rng = random.Random(f"soak-{action}")
    template = make_mp4(tmp_path / "t.mp4", seconds=0.5, seed=5).read_bytes()
    d = DaemonProc(tmp_path / "h", action=action, settle=0.2, workers=2)
    wanted = _batch(d.inbox, template, FILES)
    for _ in range(KILLS):
        d.start()
        time.sleep(rng.uniform(0.1, 1.2))  # start-up, reconcile, mid-stage, mid-commit ...
        d.kill()
    d.start()
    try:
        wait_until(lambda: d.status()["jobs"]["done"] >= FILES, 180, interval=0.5)
        status = d.status()
    finally:
        assert d.stop() == 0
    assert status["jobs"]["failed"] == 0 and status["jobs"]["dead"] == 0, status
    objects = [p for p in d.objects()]
    temps = [p for p in objects if ".tmp-" in p.name]
    assert not temps, temps
    stored = {}
    for obj in objects:
        name = obj.name.split(".")[0]
        assert name not in stored, f"{name} stored twice"
        stored[name] = _b3(obj.read_bytes())
        assert stored[name] == name, f"{obj} does not hold the bytes its name says"
    assert set(stored) == set(wanted), "a content is missing from the library"
    left = {p.name for p in d.inbox.iterdir()}
    if action == "move":
        assert not left, f"moved files left behind: {sorted(left)[:5]}"
    else:
        assert left == set(wanted.values())
    with sqlite3.connect(d.state / "harbord.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        items = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        refs = conn.execute("SELECT count(*) FROM objects WHERE hash NOT IN "
                            "(SELECT object_hash FROM files WHERE object_hash IS NOT NULL)").fetchone()[0]
    assert items == FILES and refs == 0


def _tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True)
    return done.returncode == 0


def test_a_full_library_fails_the_job_retryably_and_keeps_the_file(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "h", action="copy", handlers=("checksum", "store"))
    d.config.write_text(d.config.read_text().replace("max_attempts = 3", "max_attempts = 30"))
    d.inbox.mkdir(parents=True)
    big = d.inbox / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    want = _b3(big.read_bytes())
    if not _tmpfs(d.library, "1m"):  # no mount here: the same fault through RLIMIT_FSIZE
        limit = 1 << 20

        def cap() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        run = subprocess.run(
            [sys.executable, "-m", "harbord", "--config", str(d.config), "ingest", "--json",
             "--action", "copy", str(big)],
            capture_output=True, text=True, preexec_fn=cap, timeout=120,
        )
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
        result = json.loads(run.stdout)[str(big)]
        assert result["state"] == "failed" and "too large" in result["error"], result
        assert big.exists() and _b3(big.read_bytes()) == want
        assert not [p for p in d.library.rglob("*") if p.is_file()]
        return
    try:
        d.start()
        wait_until(lambda: d.status()["jobs"]["failed"] == 1, 60)
        failure = d.status()["failures"][0]
        assert "disk full" in failure["error"] and failure["next_attempt_at"], failure
        assert big.exists() and _b3(big.read_bytes()) == want
        assert not [p for p in d.library.rglob("*") if p.is_file()]  # no temp file, no half object
        small = d.inbox / "small.bin"
        small.write_bytes(os.urandom(1000))
        wait_until(lambda: d.status()["jobs"]["done"] == 1, 30)  # the daemon goes on
        subprocess.run(["mount", "-o", "remount,size=16m", str(d.library)], check=True)
        wait_until(lambda: d.status()["jobs"]["done"] == 2, 60)  # the retry finds room
        assert any(p.name.startswith(want) for p in d.objects())
    finally:
        if d.proc is not None:
            d.stop()
        subprocess.run(["umount", "-l", str(d.library)], capture_output=True)
