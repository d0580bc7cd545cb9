"""`harbord ingest` while the daemon runs: the files are handed over to it; one daemon per state."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemon_proc import DaemonProc
from tests.support.media import make_mp3, make_mp4
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow

FULL_CHAIN = ("parse", "probe", "checksum", "store", "embed", "index")


def log_events(daemon: DaemonProc, event: str) -> set[str]:
    """Job ids of the daemon's JSON log lines with this ``event``."""
    ids = set()
    for line in daemon.log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event and record.get("job_id"):
            ids.add(record["job_id"])
    return ids


def test_ingest_hands_its_files_to_the_running_daemon(tmp_path: Path) -> None:
    # With embed + index in the chain the daemon holds the embedding space's writer lock: an
    # ingest running the chain itself beside it would fail every file at embed.
    daemon = DaemonProc(tmp_path / "h", handlers=FULL_CHAIN).start()
    try:
        drop = tmp_path / "drop"
        drop.mkdir()
        make_mp4(drop / "Big.Buck.Bunny.2008.mp4", seed=90)
        make_mp3(drop / "Artist - Song.mp3", seed=91)
        (drop / "broken.mkv").write_bytes(os.urandom(4000))
        run = daemon.cli("ingest", "--json", str(drop), check=False)
        assert run.returncode == 1, run.stderr  # broken.mkv failed
        results = json.loads(run.stdout)
        good = [results[str(drop / n)] for n in ("Big.Buck.Bunny.2008.mp4", "Artist - Song.mp3")]
        assert all(r["state"] == "done" and r["outcome"] == "ingested" and r["item_id"] for r in good)
        broken = results[str(drop / "broken.mkv")]
        assert broken["state"] == "failed" and "broken.mkv" in broken["error"]
        # the daemon ran them: its log has their ingested lines; and they went through embed
        assert {r["job_id"] for r in good} <= log_events(daemon, "ingested")
        with sqlite3.connect(daemon.state / "harbord.db") as conn:
            vectors = conn.execute("SELECT count(*) FROM vectors WHERE deleted = 0").fetchone()[0]
        assert vectors == 2
        assert sorted(p.name for p in drop.iterdir()) == ["Artist - Song.mp3", "Big.Buck.Bunny.2008.mp4",
                                                          "broken.mkv"]  # --action keep
    finally:
        if daemon.proc:
            daemon.kill()


def test_a_second_daemon_on_the_same_state_refuses_to_start(tmp_path: Path) -> None:
    daemon = DaemonProc(tmp_path / "h").start()
    try:
        second = subprocess.run([sys.executable, "-m", "harbord", "--config", str(daemon.config), "run"],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert f"another harbord daemon (pid {daemon.proc.pid if daemon.proc else '?'})" in second.stderr
        assert daemon.proc is not None and daemon.proc.poll() is None  # the first one runs on
    finally:
        if daemon.proc:
            daemon.kill()
    # the lock dies with its process, even killed: a new daemon starts
    daemon.start()
    assert daemon.stop() == 0


def test_a_daemon_killed_during_a_hand_over_ends_the_command_and_loses_nothing(tmp_path: Path) -> None:
    base = make_mp4(tmp_path / "base.mp4", seed=92).read_bytes()
    drop = tmp_path / "drop"
    drop.mkdir()
    for i in range(40):
        (drop / f"Show.Name.S03E{i + 1:02d}.mp4").write_bytes(base + f"#{i:04d}".encode())
    daemon = DaemonProc(tmp_path / "h", workers=1).start()
    try:
        ingest = subprocess.Popen(
            [sys.executable, "-m", "harbord", "--config", str(daemon.config), "ingest", "--json", str(drop)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

        def done() -> int:
            try:
                with sqlite3.connect(daemon.state / "harbord.db") as conn:
                    return int(conn.execute("SELECT count(*) FROM jobs WHERE state = 'done'").fetchone()[0])
            except sqlite3.Error:
                return 0

        wait_until(lambda: done() >= 3, 60, interval=0.02)
        daemon.kill()
        stdout, stderr = ingest.communicate(timeout=30)
        assert ingest.returncode == 1, stderr  # not everything ended
        states = [r["state"] for r in json.loads(stdout).values()]
        assert len(states) == 40 and 3 <= states.count("done") < 40
        # restarted, the daemon resumes the rest; the same command then reports all done
        daemon.start()
        again = daemon.cli("ingest", "--json", str(drop), check=False)
        assert again.returncode == 0, again.stderr
        assert {r["state"] for r in json.loads(again.stdout).values()} == {"done"}
        assert len(daemon.objects()) == 40
    finally:
        if daemon.proc:
            daemon.kill()
