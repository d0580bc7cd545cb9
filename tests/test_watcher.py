"""Watcher: real inotify (and polling) events in temp folders, settle rules, reconcile."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from harbord.config import WatchConfig
from harbord.watcher import Watcher, is_partial
from tests.support.waits import async_wait_until


class Collector:
    def __init__(self) -> None:
        self.got: list[tuple[str, int]] = []

    def __call__(self, path: str, size: int, mtime: float, watch: WatchConfig) -> None:
        self.got.append((path, size))

    def names(self) -> list[str]:
        return sorted(Path(p).name for p, _ in self.got)

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``count`` files were handed on; fails the test after ``timeout`` s."""
        await async_wait_until(lambda: len(self.got) >= count, timeout, 0.02,
                               what=f"{count} file(s) handed on (got {self.names()})")

    async def wait_for_name(self, name: str, timeout: float = 5.0) -> None:
        """Wait until a file called ``name`` was handed on.

        A marker: a file written after the ones a test expects *not* to be handed on settles
        after them (same rules, later events), so once the marker is here, any of those would
        have been too; no fixed sleep is needed to prove that they were not.
        """
        await async_wait_until(lambda: name in self.names(), timeout, 0.02,
                               what=f"{name} handed on (got {self.names()})")


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


async def _watcher(inbox: Path, sink: Collector, settle: float = 0.4, **kw: object) -> Watcher:
    watch = WatchConfig(path=inbox, **kw)  # type: ignore[arg-type]
    watcher = Watcher([watch], sink, settle_seconds=settle)
    await watcher.start()
    return watcher


async def test_file_is_handed_on_once_after_writing_finishes(inbox: Path) -> None:
    sink = Collector()
    watcher = await _watcher(inbox, sink, settle=0.3)
    try:
        with open(inbox / "movie.mkv", "wb") as fh:
            for _ in range(6):  # keeps changing for longer than settle_seconds
                fh.write(b"x" * 1000)
                fh.flush()
                await asyncio.sleep(0.1)  # the slow writer's pace (scenario)
            assert sink.got == []
        await sink.wait_for(1)
        (inbox / "marker.mkv").write_bytes(b"m")  # a second hand-off would come before it
        await sink.wait_for_name("marker.mkv")
        assert sink.got == [(str(inbox / "movie.mkv"), 6000), (str(inbox / "marker.mkv"), 1)]
    finally:
        await watcher.stop()


async def test_partial_downloads_wait_for_their_final_name(inbox: Path) -> None:
    sink = Collector()
    watcher = await _watcher(inbox, sink)
    try:
        for name in ("a.mkv.part", "b.mp4.crdownload", "c.ytdl", "d.tmp", ".hidden.mkv", "e.partial"):
            (inbox / name).write_bytes(b"data")
        (inbox / "f.mkv").write_bytes(b"data")
        (inbox / "f.mkv.aria2").write_bytes(b"ctl")
        (inbox / "marker1.mkv").write_bytes(b"m")  # written last: settles after all of them
        await sink.wait_for_name("marker1.mkv")
        assert sink.names() == ["marker1.mkv"]
        os.rename(inbox / "a.mkv.part", inbox / "a.mkv")
        (inbox / "f.mkv.aria2").unlink()
        (inbox / "marker2.mkv").write_bytes(b"m")
        await sink.wait_for_name("marker2.mkv")
        assert sink.names() == ["a.mkv", "f.mkv", "marker1.mkv", "marker2.mkv"]
    finally:
        await watcher.stop()


async def test_folder_dropped_whole_and_moved_in_files(inbox: Path, tmp_path: Path) -> None:
    staging = tmp_path / "staging" / "Show Name" / "Season 1"
    staging.mkdir(parents=True)
    for i in range(3):
        (staging / f"Show.Name.S01E0{i + 1}.mkv").write_bytes(bytes([i]) * 100)
    sink = Collector()
    watcher = await _watcher(inbox, sink, settle=5.0)  # moved-in files must not wait for settle
    try:
        shutil.move(str(tmp_path / "staging" / "Show Name"), inbox / "Show Name")
        await sink.wait_for(3, timeout=3.0)
        assert sink.names() == [f"Show.Name.S01E0{i}.mkv" for i in (1, 2, 3)]
    finally:
        await watcher.stop()


async def test_reconcile_offers_unseen_files_present_at_start(inbox: Path) -> None:
    (inbox / "old.mkv").write_bytes(b"old")
    (inbox / "seen.mkv").write_bytes(b"seen")
    (inbox / "sub").mkdir()
    (inbox / "sub" / "deep.mp3").write_bytes(b"deep")
    sink = Collector()
    seen = str(inbox / "seen.mkv")
    watch = WatchConfig(path=inbox)
    watcher = Watcher([watch], sink, settle_seconds=0.2, seen=lambda p, s, m: p == seen)
    await watcher.start()
    try:
        (inbox / "marker.mkv").write_bytes(b"m")  # after the reconcile pass: settles after it
        await sink.wait_for_name("marker.mkv")
        assert sink.names() == ["deep.mp3", "marker.mkv", "old.mkv"]
    finally:
        await watcher.stop()


async def test_excluded_folders_are_never_offered(inbox: Path) -> None:
    library = inbox / "library"
    library.mkdir()
    sink = Collector()
    watcher = Watcher([WatchConfig(path=inbox)], sink, settle_seconds=0.2, exclude=[library])
    await watcher.start()
    try:
        (library / "obj.mkv").write_bytes(b"x")
        (inbox / "real.mkv").write_bytes(b"y")  # written after obj.mkv: also its marker
        await sink.wait_for_name("real.mkv")
        assert sink.names() == ["real.mkv"]
    finally:
        await watcher.stop()


async def test_polling_observer_sees_new_files(inbox: Path) -> None:
    sink = Collector()
    watcher = await _watcher(inbox, sink, settle=0.2, polling=True, poll_interval=0.2)
    try:
        (inbox / "nfs.mkv").write_bytes(b"z" * 10)
        await sink.wait_for(1, timeout=5)
        assert sink.names() == ["nfs.mkv"]
    finally:
        await watcher.stop()


def test_partial_names(tmp_path: Path) -> None:
    assert is_partial(tmp_path / "x.!qB")
    assert is_partial(tmp_path / "x.f137.mp4.part-Frag3")
    assert not is_partial(tmp_path / "Movie (2010).mkv")
    assert not is_partial(tmp_path / ("L" * 251 + ".mkv"))  # companion name would be too long


async def test_single_file_moved_in_from_elsewhere_is_complete(inbox: Path, tmp_path: Path) -> None:
    outside = tmp_path / "done.mkv"
    outside.write_bytes(b"m" * 50)
    sink = Collector()
    watcher = await _watcher(inbox, sink, settle=10.0)
    try:
        os.rename(outside, inbox / "done.mkv")
        await sink.wait_for(1, timeout=3.0)
        assert sink.names() == ["done.mkv"]
    finally:
        await watcher.stop()
