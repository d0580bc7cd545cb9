"""The `harbord` command line, run as a real subprocess against real files and SQLite."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.daemon_proc import DaemonProc
from tests.support.media import make_mp3, make_mp4


@pytest.fixture
def h(tmp_path: Path) -> DaemonProc:
    """A config (no broker) whose CLI we run; the daemon itself is not started."""
    return DaemonProc(tmp_path / "h")


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    (folder / "Season 1").mkdir(parents=True)
    make_mp4(folder / "Season 1" / "Show.Name.S01E01.mp4", seed=60)
    make_mp3(folder / "Artist - Song.mp3", seed=61)
    (folder / "broken.mkv").write_bytes(os.urandom(5000))
    (folder / "download.mkv.part").write_bytes(b"partial")
    return folder


def test_ingest_exit_codes_json_and_status(h: DaemonProc, drop: Path) -> None:
    run = h.cli("ingest", "--json", str(drop), check=False)
    assert run.returncode == 1, run.stderr  # one file failed
    results = json.loads(run.stdout)
    assert set(results) == {str(drop / "Season 1" / "Show.Name.S01E01.mp4"),
                            str(drop / "Artist - Song.mp3"), str(drop / "broken.mkv")}
    broken = results[str(drop / "broken.mkv")]
    assert broken["state"] == "failed" and "broken.mkv" in broken["error"]
    good = results[str(drop / "Artist - Song.mp3")]
    assert good["state"] == "done" and good["outcome"] == "ingested" and good["item_id"] >= 1
    assert all(p.exists() for p in drop.rglob("*"))  # --action keep: nothing moved

    status = h.status()
    assert set(status) == {"jobs", "items", "objects", "bytes", "failures"}
    assert status["jobs"] == {"pending": 0, "running": 0, "done": 2, "failed": 1, "dead": 0}
    assert status["items"] == 2 and status["objects"] == 2
    assert status["failures"][0]["path"] == str(drop / "broken.mkv")
    assert set(status["failures"][0]) == {"job_id", "path", "state", "attempts", "error", "next_attempt_at"}

    # only good files: exit 0; the same files again are done already (still exit 0)
    good_only = h.cli("ingest", str(drop / "Season 1"), str(drop / "Artist - Song.mp3"), check=False)
    assert good_only.returncode == 0, good_only.stdout + good_only.stderr
    # a copy of known content is a duplicate, also exit 0
    copy = drop.parent / "copy.mp3"
    copy.write_bytes((drop / "Artist - Song.mp3").read_bytes())
    dup = json.loads(h.cli("ingest", "--json", str(copy)).stdout)
    assert dup[str(copy)]["outcome"] == "duplicate" and dup[str(copy)]["item_id"] == good["item_id"]


def test_ingest_of_a_folder_parses_names_below_the_folder_s_parent(h: DaemonProc, tmp_path: Path) -> None:
    # Taken as if "Season 2" were dropped into an inbox: the folder above it is not context.
    # guessit on the two parents instead ("Downloads 2019/Season 2/...") reads title
    # "Downloads", year 2019, and no episode.
    season = tmp_path / "Downloads 2019" / "Season 2"
    season.mkdir(parents=True)
    episode = make_mp4(season / "Some Show - 05.mp4", seed=62)
    results = json.loads(h.cli("ingest", "--json", str(season)).stdout)
    item = json.loads(h.cli("show", str(results[str(episode)]["item_id"]), "--json").stdout)
    assert (item["title"], item["season"], item["year"]) == ("Some Show", 2, None)
    assert item["parsed"]["episode"] == 5


def test_show_by_item_job_and_path(h: DaemonProc, drop: Path) -> None:
    episode = drop / "Season 1" / "Show.Name.S01E01.mp4"
    results = json.loads(h.cli("ingest", "--json", str(episode)).stdout)
    job_id, item_id = results[str(episode)]["job_id"], results[str(episode)]["item_id"]
    for ref in (str(item_id), job_id, str(episode)):
        item = json.loads(h.cli("show", ref, "--json").stdout)
        assert item["id"] == item_id
        assert item["media_type"] == "episode" and item["season"] == 1
        assert item["object"]["path"].endswith(f"{item['object_hash']}.mp4")
        assert [f["path"] for f in item["files"]] == [str(episode)]
        assert item["probe"]["video"][0]["codec"] == "AVC"
    table = h.cli("show", str(item_id)).stdout
    assert "Show Name" in table
    missing = h.cli("show", "99999", check=False)
    assert missing.returncode == 1 and "no item" in missing.stderr


def test_retry_puts_failed_jobs_back(h: DaemonProc, drop: Path) -> None:
    h.cli("ingest", str(drop / "broken.mkv"), check=False)
    assert h.status()["jobs"]["failed"] == 1
    assert "1 job(s) queued again" in h.cli("retry", "--failed").stdout
    assert h.status()["jobs"] == {"pending": 1, "running": 0, "done": 0, "failed": 0, "dead": 0}
    assert h.cli("retry", check=False).returncode == 2
    assert h.cli("retry", "no-such-job", check=False).returncode == 1


def test_check_config_names_the_bad_key(h: DaemonProc) -> None:
    ok = h.cli("check-config")
    assert json.loads(ok.stdout)["pipeline"]["handlers"] == ["parse", "probe", "checksum", "store"]
    h.config.write_text(h.config.read_text() + "\n[embed]\nbackend = \"clip\"\n")
    bad = h.cli("check-config", check=False)
    assert bad.returncode == 2
    assert "embed.backend" in bad.stderr and "Traceback" not in bad.stderr


def test_doctor_reports_each_check(h: DaemonProc, drop: Path) -> None:
    h.cli("ingest", str(drop / "Artist - Song.mp3"))
    run = h.cli("doctor", check=False)
    assert run.returncode == 0, run.stdout
    for check in ("state folder", "library folder", "watch inbox", "database", "mqtt broker",
                  "ffmpeg", "mediainfo", "inotify"):
        assert check in run.stdout
    # an unusable database is a failed check and exit 1
    db = h.state / "harbord.db"
    for extra in ("-wal", "-shm"):
        Path(str(db) + extra).unlink(missing_ok=True)
    db.write_bytes(b"not a database" * 100)
    bad = h.cli("doctor", check=False)
    assert bad.returncode == 1 and "fail" in bad.stdout


def test_status_on_a_fresh_install_is_all_zero(h: DaemonProc) -> None:
    assert h.status() == {"jobs": {"pending": 0, "running": 0, "done": 0, "failed": 0, "dead": 0},
                          "items": 0, "objects": 0, "bytes": 0, "failures": []}


def test_doctor_checks_the_embedding_backend(tmp_path: Path) -> None:
    ok = DaemonProc(tmp_path / "ok", handlers=("parse", "probe", "checksum", "store", "embed", "index"))
    run = ok.cli("doctor", check=False)
    assert run.returncode == 0 and "all-MiniLM-L6-v2" in run.stdout
    bad = DaemonProc(tmp_path / "bad", handlers=("parse", "probe", "checksum", "store", "embed"),
                     extra='[embed]\nbackend = "imagebind"\n')
    run = bad.cli("doctor", check=False)
    assert run.returncode == 1 and "embedding model" in run.stdout and "checkpoint" in run.stdout
