"""End to end search: the daemon embeds and indexes items as they arrive; `harbord search`
finds them by meaning from another process; a kill -9 mid-batch loses and doubles nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support.daemon_proc import DaemonProc
from tests.support.fixtures import FIXTURES
from tests.support.media import make_mp4
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow

CHAIN = ("parse", "probe", "checksum", "store", "embed", "index")
VIDEOS = {  # yt-dlp .info.json sidecars recorded from real downloads
    "miiverse": "tubesync/JjQDik3yNhA_mental_outlaw_miiverse.info.json",
    "allstar": "ytdl-nfo/L_jWHffIx5E_smash_mouth_all_star.info.json",
    "trance": "tubesync/gogEJyoSB9s_group_therapy_487.info.json",
    "mountain": "tubeup/Mountain_3_-_Video_Background_HD_1080p-6iRV8liah8A.info.json",
}
QUERIES = {
    "why did Nintendo close its social network for children": "miiverse",
    "remastered HD music video of a band performing their hit": "allstar",
    "weekly trance radio show with DJs": "trance",
    "scenic nature footage to use as a video background": "mountain",
}


def _settled(daemon: DaemonProc, items: int) -> bool:
    status = daemon.status()
    jobs = status["jobs"]
    return bool(status["items"] == items and jobs["pending"] == jobs["running"] == 0)


def _search(daemon: DaemonProc, *args: str) -> list[dict[str, object]]:
    return json.loads(daemon.cli("search", "--json", *args).stdout)  # type: ignore[no-any-return]


def _drop_video(daemon: DaemonProc, staging: Path, stem: str, info: Path | None, seed: int) -> None:
    if info is not None:  # the sidecar first, as yt-dlp writes it
        shutil.copy(info, daemon.inbox / f"{stem}.info.json")
    make_mp4(staging / f"{stem}.mp4", seed=seed)
    shutil.move(str(staging / f"{stem}.mp4"), daemon.inbox / f"{stem}.mp4")


def test_daemon_indexes_arrivals_and_search_finds_them(tmp_path: Path) -> None:
    daemon = DaemonProc(tmp_path / "h", handlers=CHAIN, extra="[index]\nsave_every_seconds = 1.0\n")
    daemon.start()
    staging = tmp_path / "staging"
    staging.mkdir()
    try:
        assert _search(daemon, "anything") == []  # empty index: empty list, not an error
        for seed, (key, rel) in enumerate(VIDEOS.items()):
            _drop_video(daemon, staging, key, FIXTURES / "ytdlp" / rel, seed + 100)
        wait_until(lambda: _settled(daemon, 4), 120, interval=0.5)
        items = {json.loads(daemon.cli("show", str(i), "--json").stdout)["files"][0]["path"]: i
                 for i in range(1, 5)}
        by_key = {Path(p).stem: i for p, i in items.items()}
        for query, key in QUERIES.items():
            hits = _search(daemon, query, "-k", "3")
            assert hits[0]["item_id"] == by_key[key], (query, hits)
            assert hits[0]["media_type"] == "video"
        like = _search(daemon, "--like", str(by_key["miiverse"]))
        assert by_key["miiverse"] not in [h["item_id"] for h in like]
        assert _search(daemon, "nintendo", "--type", "movie") == []  # filter by type
        assert daemon.stop() == 0
    finally:
        if daemon.proc:
            daemon.kill()


def test_kill_9_while_indexing_then_every_item_searchable_once(tmp_path: Path) -> None:
    daemon = DaemonProc(tmp_path / "h", handlers=CHAIN, extra="[index]\nsave_every_seconds = 0.5\n")
    daemon.start()
    staging = tmp_path / "staging"
    staging.mkdir()
    try:
        for i in range(24):
            _drop_video(daemon, staging, f"Holiday Clip {i:02d} beach and mountains", None, 200 + i)
        wait_until(lambda: daemon.status()["items"] >= 6, 120, interval=0.2)
        daemon.kill()
        daemon.start()
        wait_until(lambda: _settled(daemon, 24), 180, interval=0.5)
        assert daemon.stop() == 0
        hits = _search(daemon, "holiday clip", "-k", "100")
        ids = [h["item_id"] for h in hits]
        assert len(ids) == len(set(ids)) == 24  # every done item once, none twice
        assert daemon.status()["items"] == 24
    finally:
        if daemon.proc:
            daemon.kill()
