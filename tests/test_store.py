"""store: content-addressed objects for every action, duplicates, idempotency, no temp leftovers."""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import blake3
import pytest

from handlers.files.checksum import Checksum
from handlers.files.parse import Parse
from handlers.files.probe import Probe
from handlers.files.store import Store, place
from harbord.capability import STEPS
from harbord.chain import Handler
from harbord.context import Context
from harbord.errors import PermanentError, RetryableError, Skip
from harbord.job import Job
from tests.support.media import make_mkv, make_mp3, make_mp4


async def ready(path: Path, action: str = "move", job_id: str = "j1") -> Job:
    """The job as parse and checksum leave it for store (real stages, settle facts from stat)."""
    st = path.stat()
    job = Job(id=job_id, path=str(path), size=st.st_size, mtime=st.st_mtime, action=action,
              watch_root=str(path.parent))
    return await Checksum().handle(await Parse().handle(job))


def objects(ctx: Context) -> list[Path]:
    return sorted(p for p in (ctx.config.paths.library / "objects").rglob("*") if p.is_file())


def leftovers(ctx: Context) -> list[Path]:
    return [p for p in ctx.config.paths.library.rglob("*") if ".tmp-" in p.name]


def rows(ctx: Context, sql: str, *args: Any) -> list[dict[str, Any]]:
    return list(ctx.db.query(sql, list(args)))


def b3(path: Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()


async def test_move_stores_object_named_by_hash_and_removes_source(ctx: Context, inbox: Path) -> None:
    src = make_mp4(inbox / "The.Matrix.1999.mp4")
    digest = b3(src)
    job = await ready(src)
    out = await Store.from_context(ctx).handle(job)
    obj = ctx.config.paths.library / "objects" / digest[:2] / f"{digest}.mp4"
    assert out.object_path == str(obj) and objects(ctx) == [obj]
    assert obj.name == f"{out.file_hash}.mp4" and b3(obj) == digest
    assert not src.exists()
    item = ctx.catalog.get_item(out.item_id or 0)
    assert item is not None and item["title"] == "The Matrix" and item["media_type"] == "movie"
    assert item["object"]["path"] == str(obj) and item["object"]["refcount"] == 1
    assert [(f["path"], f["present"], f["job_id"]) for f in item["files"]] == [(str(src), 0, "j1")]
    assert not leftovers(ctx)


async def test_copy_makes_an_independent_object(ctx: Context, inbox: Path) -> None:
    src = make_mkv(inbox / "a.mkv")
    out = await Store.from_context(ctx).handle(await ready(src, "copy"))
    obj = Path(out.object_path or "")
    assert src.exists() and obj.exists()
    assert src.stat().st_ino != obj.stat().st_ino and src.stat().st_nlink == 1
    assert obj.read_bytes() == src.read_bytes()
    with open(src, "r+b") as fh:  # editing the source must not touch the library
        fh.write(b"\0" * 16)
    assert b3(obj) == out.file_hash
    assert rows(ctx, "SELECT present FROM files") == [{"present": 1}]


async def test_link_shares_the_inode(ctx: Context, inbox: Path) -> None:
    src = make_mp3(inbox / "song.mp3")
    out = await Store.from_context(ctx).handle(await ready(src, "link"))
    obj = Path(out.object_path or "")
    assert src.exists() and obj.stat().st_ino == src.stat().st_ino and src.stat().st_nlink == 2


async def test_keep_leaves_the_source(ctx: Context, inbox: Path) -> None:
    src = make_mp4(inbox / "clip.mp4")
    before = src.read_bytes()
    out = await Store.from_context(ctx).handle(await ready(src, "keep"))
    assert src.read_bytes() == before
    assert Path(out.object_path or "").read_bytes() == before
    assert rows(ctx, "SELECT present FROM files") == [{"present": 1}]


def other_filesystem() -> Path | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != Path(__file__).stat().st_dev:
        return Path(tempfile.mkdtemp(dir=shm, prefix="harbord-store-"))
    return None


@pytest.mark.parametrize("action", ["move", "link"])
async def test_cross_device_falls_back_to_a_copy(ctx: Context, tmp_path: Path, action: str) -> None:
    folder = other_filesystem()
    if folder is None:
        pytest.skip("needs /dev/shm on another filesystem than the library")
    try:
        src = make_mp4(folder / "x.mp4")
        ino, data = src.stat().st_ino, src.read_bytes()
        out = await Store.from_context(ctx).handle(await ready(src, action))
        obj = Path(out.object_path or "")
        assert obj.read_bytes() == data and obj.stat().st_dev != folder.stat().st_dev
        assert src.exists() == (action == "link")
        if action == "link":
            assert src.stat().st_ino == ino and src.stat().st_nlink == 1
        assert not leftovers(ctx)
    finally:
        shutil.rmtree(folder)


async def test_duplicate_is_skipped_with_the_existing_item(ctx: Context, inbox: Path) -> None:
    first_src = make_mp4(inbox / "Heat.1995.mp4", seed=11)
    second_src = inbox / "copy of heat.m4v"  # other name, other extension, same bytes
    shutil.copyfile(first_src, second_src)
    store = Store.from_context(ctx)
    first = await store.handle(await ready(first_src, "move", "j1"))
    second_job = await ready(second_src, "move", "j2")
    with pytest.raises(Skip) as skip:
        await store.handle(second_job)
    assert skip.value.outcome == "duplicate"
    assert skip.value.reason == f"same content as item {first.item_id}"
    assert skip.value.job is not None
    assert skip.value.job.item_id == first.item_id and skip.value.job.object_path == first.object_path
    assert objects(ctx) == [Path(first.object_path or "")]  # no second object
    assert rows(ctx, "SELECT count(*) AS n FROM items") == [{"n": 1}]
    assert rows(ctx, "SELECT path, item_id FROM files ORDER BY id") == [
        {"path": str(first_src), "item_id": first.item_id},
        {"path": str(second_src), "item_id": first.item_id},
    ]
    assert ctx.catalog.get_object(first.file_hash or "")["refcount"] == 2  # type: ignore[index]
    assert not second_src.exists()  # the action still applies to a duplicate


async def test_store_twice_changes_nothing(ctx: Context, inbox: Path) -> None:
    src = make_mkv(inbox / "Show.S01E01.mkv")
    job = await ready(src, "copy")
    store = Store.from_context(ctx)
    first = await store.handle(job)
    obj = Path(first.object_path or "")
    stamp = (obj.stat().st_ino, obj.stat().st_mtime_ns)
    second = await store.handle(job)
    assert second == first
    assert (obj.stat().st_ino, obj.stat().st_mtime_ns) == stamp  # not rewritten
    assert rows(ctx, "SELECT count(*) AS n FROM files") == [{"n": 1}]
    assert ctx.catalog.get_object(first.file_hash or "")["refcount"] == 1  # type: ignore[index]


async def test_rerun_after_a_crash_after_move(ctx: Context, inbox: Path) -> None:
    src = make_mp4(inbox / "a.mp4")
    job = await ready(src, "move")
    store = Store.from_context(ctx)
    first = await store.handle(job)
    assert not src.exists()
    assert await store.handle(job) == first  # the stage ran, the record did not: run again
    # and a crash after the object was made but before anything was catalogued
    src2 = make_mp4(inbox / "b.mp4")
    job2 = await ready(src2, "move", "j2")
    final = store.object_path(job2)
    place(final, job2, [], None)
    os.unlink(src2)  # as if the move had finished too
    out = await store.handle(job2)
    assert out.item_id is not None and out.item_id != first.item_id
    assert rows(ctx, "SELECT present FROM files WHERE job_id = 'j2'") == [{"present": 0}]


async def test_damaged_object_is_replaced(ctx: Context, inbox: Path) -> None:
    src = make_mp4(inbox / "a.mp4")
    job = await ready(src, "copy")
    store = Store.from_context(ctx)
    final = store.object_path(job)
    final.parent.mkdir(parents=True)
    final.write_bytes(b"half an object")
    out = await store.handle(job)
    assert b3(Path(out.object_path or "")) == job.file_hash


async def test_source_changed_since_checksum(ctx: Context, inbox: Path) -> None:
    src = make_mp4(inbox / "a.mp4")
    job = await ready(src, "move")
    with open(src, "ab") as fh:
        fh.write(b"appended")
    with pytest.raises(RetryableError, match="replaced or changed since it was hashed"):
        await Store.from_context(ctx).handle(job)
    assert src.exists() and not objects(ctx) and not rows(ctx, "SELECT * FROM files")


async def test_source_gone_and_no_object(ctx: Context, inbox: Path) -> None:
    src = make_mp4(inbox / "a.mp4")
    job = await ready(src)
    src.unlink()
    with pytest.raises(PermanentError, match=r"^file disappeared$"):
        await Store.from_context(ctx).handle(job)


async def test_job_without_hash_or_with_unknown_action(ctx: Context, inbox: Path) -> None:
    src = make_mp4(inbox / "a.mp4")
    with pytest.raises(PermanentError, match="checksum step must run before store"):
        await Store.from_context(ctx).handle(Job(id="x", path=str(src)))
    job = dataclasses.replace(await ready(src), action="shred")
    with pytest.raises(PermanentError, match="unknown action 'shred'"):
        await Store.from_context(ctx).handle(job)


@pytest.mark.parametrize(("name", "ext"), [("NOEXT", "bin"), ("LOUD.MKV", "mkv"), ("odd.ü-x", "bin")])
async def test_object_extension(ctx: Context, inbox: Path, name: str, ext: str) -> None:
    src = inbox / name
    shutil.copyfile(make_mkv(inbox / "tpl.mkv"), src)
    out = await Store.from_context(ctx).handle(await ready(src, "copy"))
    assert Path(out.object_path or "").name == f"{out.file_hash}.{ext}"
    assert ctx.catalog.get_object(out.file_hash or "")["ext"] == ext  # type: ignore[index]


async def test_disk_full_while_copying_leaves_no_temp(
    ctx: Context, inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC cannot be produced on demand with real parts: this fault is injected."""
    src = make_mp4(inbox / "a.mp4")
    job = await ready(src, "copy")

    def full_disk(src_fd: int, dst_fd: int, count: int, *args: Any) -> int:
        os.write(dst_fd, b"partial data")  # the temp file has some bytes when the disk fills up
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "copy_file_range", full_disk)
    with pytest.raises(RetryableError, match=r"^disk full: No space left on device$"):
        await Store.from_context(ctx).handle(job)
    assert not leftovers(ctx) and not objects(ctx)
    assert src.exists() and not rows(ctx, "SELECT * FROM objects")
    monkeypatch.undo()
    out = await Store.from_context(ctx).handle(job)  # the retry succeeds
    assert b3(Path(out.object_path or "")) == job.file_hash


@pytest.mark.parametrize("name", ["emoji 🎬 new\nline ü.mp4", "y" * 246 + ".mp4"])
async def test_odd_source_names(ctx: Context, inbox: Path, name: str) -> None:
    src = make_mp4(inbox / name)
    digest = b3(src)
    out = await Store.from_context(ctx).handle(await ready(src, "move"))
    assert not src.exists() and Path(out.object_path or "").name == f"{digest}.mp4"
    assert rows(ctx, "SELECT path FROM files") == [{"path": str(src)}]


def test_registered_and_protocol_conformant(ctx: Context) -> None:
    for name, cls in [("parse", Parse), ("probe", Probe), ("checksum", Checksum), ("store", Store)]:
        assert STEPS[name] is cls and cls.name == name
        assert isinstance(cls.from_context(ctx), Handler)
