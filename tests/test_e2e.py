"""End to end: `harbord run` as a subprocess, real media dropped into its inbox, a real broker.

These tests assert what a person sees: objects in the library named by their BLAKE3 hash,
`harbord status --json`, and the MQTT events, retained status and last will.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import blake3
import pytest

from tests.support.broker import Mosquitto
from tests.support.daemon_proc import DaemonProc, Subscriber
from tests.support.media import make_flac, make_jpg_exif, make_mkv, make_mp3, make_mp4, truncate
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow


def _b3(path: Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()


@pytest.fixture
def media(tmp_path: Path) -> dict[str, Path]:
    """Real media under movie-, episode- and music-style names, made with ffmpeg/Pillow."""
    src = tmp_path / "src"
    src.mkdir()
    return {
        "movie": make_mp4(src / "Big.Buck.Bunny.2008.1080p.BluRay.x264-GRP.mp4", seed=1),
        "episode": make_mkv(src / "Show.Name.S01E02.720p.HDTV.x264-LOL.mkv", seed=2),
        "mp3": make_mp3(src / "Artist - Song.mp3", seed=3),
        "flac": make_flac(src / "Artist - Track 01.flac", seed=4),
        "photo": make_jpg_exif(src / "IMG_0001.jpg"),
    }


def test_dropped_files_are_stored_catalogued_and_announced(
    tmp_path: Path, broker: Mosquitto, media: dict[str, Path]
) -> None:
    daemon = DaemonProc(tmp_path / "h", mqtt_port=broker.port).start()
    sub = Subscriber(broker.port)
    try:
        wait_until(lambda: sub.last("harbord/status") == "online", 15)
        hashes = {name: _b3(path) for name, path in media.items()}
        for path in media.values():
            shutil.copy(path, daemon.inbox / path.name)
        wait_until(lambda: len(sub.events("ingested")) == 5, 60)

        objects = daemon.objects()
        assert sorted(p.stem for p in objects) == sorted(hashes.values())
        for obj in objects:
            assert obj.parent.name == obj.stem[:2]
            assert _b3(obj) == obj.stem  # the name is the BLAKE3 of the content
        assert list(daemon.inbox.iterdir()) == []  # action = move

        status = daemon.status()
        assert status["jobs"] == {"pending": 0, "running": 0, "done": 5, "failed": 0, "dead": 0}
        assert status["items"] == 5 and status["objects"] == 5
        assert status["bytes"] == sum(p.stat().st_size for p in media.values())

        ingested = {Path(e["path"]).name: e for e in sub.events("ingested")}
        episode = ingested[media["episode"].name]
        assert episode["media_type"] == "episode" and episode["item_id"] >= 1
        shown = json.loads(daemon.cli("show", str(episode["item_id"]), "--json").stdout)
        assert shown["title"] == "Show Name" and shown["season"] == 1
        assert shown["object_hash"] == hashes["episode"]
        assert shown["probe"]["duration"] == pytest.approx(1.0, abs=0.3)

        # every job's events: queued first, then stages in chain order, then ingested
        for job_id in {e["job_id"] for e in sub.events()}:
            types = [(e["type"], e.get("stage")) for e in sub.events() if e["job_id"] == job_id]
            assert types == [("queued", None), ("stage", "parse"), ("stage", "probe"),
                             ("stage", "checksum"), ("stage", "store"), ("ingested", None)]

        # the same content under another name: a duplicate, no second object
        shutil.copy(media["movie"], daemon.inbox / "copy of movie.mp4")
        dup = wait_until(lambda: sub.events("duplicate"), 30)[0]
        assert dup["item_id"] == ingested[media["movie"].name]["item_id"]
        assert len(daemon.objects()) == 5
        assert daemon.status()["items"] == 5

        def latest_state() -> dict[str, int] | None:
            raw = sub.last("harbord/state")
            state = json.loads(raw) if raw else None
            return state if state and state["duplicate_total"] == 1 else None

        state = wait_until(latest_state, 10)
        assert state["ingested_total"] == 5 and state["queue_depth"] == 0
        assert state["totals"]["objects"] == 5

        assert daemon.stop() == 0
        wait_until(lambda: sub.last("harbord/status") == "stopped", 10)
    finally:
        sub.close()
        if daemon.proc:
            daemon.kill()


def test_a_dropped_folder_s_sidecars_go_with_their_file(tmp_path: Path) -> None:
    staging = tmp_path / "staging" / "Show Name" / "Season 1"
    staging.mkdir(parents=True)
    episode = make_mkv(staging / "Show.Name.S01E03.mkv", seed=8)
    (staging / "Show.Name.S01E03.en.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nHi\n")
    (staging / "Show.Name.S01E03.nfo").write_text("<episodedetails/>")
    make_jpg_exif(staging / "poster.jpg")
    digest = _b3(episode)
    daemon = DaemonProc(tmp_path / "h", settle=0.2).start()
    try:
        shutil.copytree(tmp_path / "staging" / "Show Name", daemon.inbox / "Show Name")
        # the episode, and the sidecars' own jobs (queued as they arrived), all end
        wait_until(lambda: daemon.status()["jobs"]["done"] == 4, 60, interval=0.2)
        status = daemon.status()
        assert status["jobs"]["failed"] == 0 and status["jobs"]["dead"] == 0
        assert status["items"] == 1  # neither the subtitles nor the poster became items
        names = sorted(p.name for p in daemon.objects())
        assert names == sorted([f"{digest}.mkv", f"{digest}.en.srt", f"{digest}.nfo", f"{digest}-poster.jpg"])
        left = sorted(str(p.relative_to(daemon.inbox)) for p in daemon.inbox.rglob("*") if p.is_file())
        assert left == ["Show Name/Season 1/poster.jpg"]  # the folder's art stays for its other files
        # subtitles fetched later, into the folder the episode has left, join it in the library
        (daemon.inbox / "Show Name" / "Season 1" / "Show.Name.S01E03.de.srt").write_text("1\n")
        wait_until(lambda: daemon.status()["jobs"]["done"] == 5, 60, interval=0.2)
        assert (daemon.library / "objects" / digest[:2] / f"{digest}.de.srt").read_text() == "1\n"
        assert not (daemon.inbox / "Show Name" / "Season 1" / "Show.Name.S01E03.de.srt").exists()
        # the leftover poster, touched while the daemon is down, is queued again by the restart's
        # reconcile pass, and not taken for a photo
        assert daemon.stop() == 0
        poster = daemon.inbox / "Show Name" / "Season 1" / "poster.jpg"
        os.utime(poster, (poster.stat().st_atime, poster.stat().st_mtime - 60))
        daemon.start()
        wait_until(lambda: daemon.status()["jobs"]["done"] == 6, 60, interval=0.2)
        assert daemon.status()["items"] == 1 and poster.exists()
    finally:
        if daemon.proc:
            daemon.kill()


def test_kill_9_publishes_the_last_will(tmp_path: Path, broker: Mosquitto) -> None:
    daemon = DaemonProc(tmp_path / "h", mqtt_port=broker.port).start()
    sub = Subscriber(broker.port)
    try:
        wait_until(lambda: sub.last("harbord/status") == "online", 15)
        daemon.kill()
        wait_until(lambda: sub.last("harbord/status") == "offline", 15)
    finally:
        sub.close()


def test_kill_9_mid_batch_then_restart_finishes_everything_once(tmp_path: Path) -> None:
    base = make_mp4(tmp_path / "base.mp4", seed=7)
    data = base.read_bytes()
    staging = tmp_path / "staging"
    staging.mkdir()
    for i in range(50):  # 50 distinct real mp4 files (trailing bytes differ)
        (staging / f"Show.Name.S02E{i + 1:02d}.mp4").write_bytes(data + f"#{i:04d}".encode() * 4)
    daemon = DaemonProc(tmp_path / "h", settle=0.2, workers=2).start()
    try:
        for path in sorted(staging.iterdir()):
            shutil.copy(path, daemon.inbox / path.name)
        db_path = daemon.state / "harbord.db"

        def done() -> int:  # read SQLite directly: a `status` subprocess is slower than the batch
            try:
                with sqlite3.connect(db_path) as conn:
                    return int(conn.execute("SELECT count(*) FROM jobs WHERE state = 'done'").fetchone()[0])
            except sqlite3.Error:
                return 0

        wait_until(lambda: done() >= 8, 60, interval=0.01)
        daemon.kill()
        done_before = daemon.status()["jobs"]["done"]
        assert done_before < 50
        daemon.start()
        wait_until(lambda: daemon.status()["jobs"]["done"] == 50, 120, interval=0.2)
        status = daemon.status()
        assert status["jobs"]["failed"] == 0 and status["items"] == 50 and status["objects"] == 50
        objects = daemon.objects()
        assert len(objects) == 50  # each stored once, no temp files left behind
        assert all(not p.name.startswith(".") for p in objects)
        assert list(daemon.inbox.iterdir()) == []
        assert daemon.stop() == 0
        conn = sqlite3.connect(daemon.state / "harbord.db")
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*), sum((SELECT count(*) FROM files WHERE object_hash = hash)) "
                            "FROM objects").fetchone() == (50, 50)  # each object: one file row
        conn.close()
    finally:
        if daemon.proc:
            daemon.kill()


def test_bad_input_fails_its_own_job_and_loses_nothing(tmp_path: Path, broker: Mosquitto) -> None:
    daemon = DaemonProc(tmp_path / "h", mqtt_port=broker.port).start()
    sub = Subscriber(broker.port)
    inbox = daemon.inbox
    outside = tmp_path / "outside.mp4"
    make_mp4(outside, seed=20)
    try:
        wait_until(lambda: sub.last("harbord/status") == "online", 15)
        staging = tmp_path / "bad"
        staging.mkdir()
        (staging / "zero.mkv").write_bytes(b"")
        truncate(make_mp4(staging / "truncated.mp4", seed=21), 3000)
        (staging / "random.mkv").write_bytes(os.urandom(200_000))
        odd = "Odd name ünïcødé 🎬 with\nnewline.mp4"
        make_mp4(staging / odd, seed=22)
        long_name = "L" * 246 + ".mp4"  # 250 bytes
        make_mp4(staging / long_name, seed=23)
        locked = make_mp4(staging / "locked.mp4", seed=24)
        locked.chmod(0)
        for path in sorted(staging.iterdir()):
            os.rename(path, inbox / path.name)
        os.symlink(outside, inbox / "escape.mp4")
        folder = tmp_path / "Whole Folder"
        folder.mkdir()
        make_mp3(folder / "a.mp3", seed=25)
        make_mp3(folder / "b.mp3", seed=26)
        shutil.move(str(folder), inbox / "Whole Folder")

        expect_fail = {"zero.mkv", "truncated.mp4", "random.mkv", "escape.mp4"}
        expect_ok = {odd, long_name, "a.mp3", "b.mp3"}
        names = lambda kind: {Path(e["path"]).name for e in sub.events(kind)}  # noqa: E731
        wait_until(lambda: expect_fail <= names("failed") and expect_ok <= names("ingested"), 60)
        for event in sub.events("failed"):
            name = Path(event["path"]).name
            assert name in event["error"], event  # the message names the file ...
            assert len(event["error"]) > len(event["path"]) + 10  # ... and a reason
            assert (inbox / name).exists() or (inbox / name).is_symlink()  # left where it was
        errors = {Path(e["path"]).name: e["error"] for e in sub.events("failed")}
        assert "0 bytes" in errors["zero.mkv"]
        assert "outside the watched folders" in errors["escape.mp4"]
        # root reads mode-000 files; anyone else gets a clear permission error
        assert "locked.mp4" in names("ingested") | names("failed")
        if os.geteuid() != 0:
            assert "permission" in errors["locked.mp4"].lower()
        # the daemon is still alive and ingests a good file after all that
        make_mp4(inbox / "after.mp4", seed=27)
        wait_until(lambda: "after.mp4" in names("ingested"), 30)
        status = daemon.status()
        reasons = " ".join(f["error"] for f in status["failures"])
        assert "random.mkv" in reasons and status["jobs"]["failed"] >= 4
        assert daemon.stop() == 0
    finally:
        sub.close()
        if daemon.proc:
            daemon.kill()


def test_outbox_delivers_events_in_order_after_a_broker_outage(tmp_path: Path, broker: Mosquitto) -> None:
    daemon = DaemonProc(tmp_path / "h", mqtt_port=broker.port).start()
    try:
        sub = Subscriber(broker.port)
        wait_until(lambda: sub.last("harbord/status") == "online", 15)
        sub.close()
        broker.stop()
        for i in range(5):
            make_mp3(daemon.inbox / f"outage {i}.mp3", seed=40 + i)
        wait_until(lambda: daemon.status()["jobs"]["done"] == 5, 60)  # ingestion never blocked
        broker.start()
        sub = Subscriber(broker.port)
        wait_until(lambda: len(sub.events("ingested")) == 5, 60)
        events = sub.events()
        ids = [(e["job_id"], e["type"], e.get("stage")) for e in events]
        assert len(ids) == len(set(ids)) == 5 * 6  # each event once
        for job_id in {e["job_id"] for e in events}:
            assert [t for j, t, _ in ids if j == job_id] == ["queued", *["stage"] * 4, "ingested"]
        sub.close()
        assert daemon.stop() == 0
    finally:
        if daemon.proc:
            daemon.kill()
