"""checksum: BLAKE3 of real files, change detection against settle facts, error translation."""

from __future__ import annotations

import errno
import os
import tracemalloc
from pathlib import Path

import blake3
import pytest

from handlers.files.checksum import Checksum
from handlers.files.hashing import CHUNK, hash_file
from handlers.files.oserrors import os_error
from harbord.errors import PermanentError, RetryableError
from harbord.job import Job
from tests.support.media import make_large_raw_mkv, make_mp4


def settled(path: Path, **kw: object) -> Job:
    """A job as the watcher hands it on: size and mtime at settle time."""
    st = path.stat()
    return Job(id="c1", path=str(path), size=st.st_size, mtime=st.st_mtime, **kw)  # type: ignore[arg-type]


async def test_hash_matches_blake3_reference(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "a.mp4")
    job = await Checksum().handle(settled(path))
    assert job.file_hash == blake3.blake3(path.read_bytes()).hexdigest()
    assert len(job.file_hash) == 64


async def test_multi_chunk_file(tmp_path: Path) -> None:
    path = make_large_raw_mkv(tmp_path / "big.mkv", 3 * CHUNK + 12345)
    assert path.stat().st_size > 3 * CHUNK
    job = await Checksum().handle(settled(path))
    assert job.file_hash == blake3.blake3(path.read_bytes()).hexdigest()


def test_memory_stays_flat(tmp_path: Path) -> None:
    path = make_large_raw_mkv(tmp_path / "big.mkv", 8 * CHUNK)  # 64 MiB
    tracemalloc.start()
    try:
        hash_file(str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < CHUNK + 2 * 1024 * 1024, f"peak {peak} bytes for a {path.stat().st_size}-byte file"


async def test_distinct_content_distinct_hash(tmp_path: Path) -> None:
    a = await Checksum().handle(settled(make_mp4(tmp_path / "a.mp4")))
    b = await Checksum().handle(settled(make_mp4(tmp_path / "b.mp4")))
    assert a.file_hash != b.file_hash


async def test_idempotent_and_corrects_a_stale_hash(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "a.mp4")
    first = await Checksum().handle(settled(path))
    assert await Checksum().handle(first) == first
    stale = settled(path, file_hash="0" * 64)
    assert (await Checksum().handle(stale)).file_hash == first.file_hash


async def test_grown_since_settle_is_retryable(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "a.mp4")
    job = settled(path)
    with open(path, "ab") as fh:
        fh.write(b"more")
    with pytest.raises(RetryableError, match=r"^file changed while hashing"):
        await Checksum().handle(job)


async def test_touched_since_settle_is_retryable(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "a.mp4")
    job = settled(path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    with pytest.raises(RetryableError, match="file changed while hashing"):
        await Checksum().handle(job)


async def test_without_settle_facts_the_file_is_hashed(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "a.mp4")
    job = await Checksum().handle(Job(id="c2", path=str(path)))  # size 0, mtime 0: not known
    assert job.file_hash == blake3.blake3(path.read_bytes()).hexdigest()


async def test_vanished_and_not_a_file(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "a.mp4")
    job = settled(path)
    path.unlink()
    with pytest.raises(PermanentError, match=r"^file disappeared$"):
        await Checksum().handle(job)
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(PermanentError, match="not a regular file"):
        await Checksum().handle(Job(id="c3", path=str(tmp_path / "dir.mp4")))


@pytest.mark.parametrize(
    ("code", "kind", "text"),
    [
        (errno.ENOSPC, RetryableError, "disk full: "),
        (errno.EDQUOT, RetryableError, "disk full: "),
        (errno.EBUSY, RetryableError, "cannot read: Device or resource busy (transient)"),
        (errno.EAGAIN, RetryableError, "cannot read: Resource temporarily unavailable (transient)"),
        (errno.EIO, PermanentError, "cannot read: Input/output error"),
        (errno.EACCES, PermanentError, "cannot read: permission denied"),
        (errno.ENOENT, PermanentError, "file disappeared"),
    ],
)
def test_os_error_translation(code: int, kind: type, text: str) -> None:
    err = OSError(code, os.strerror(code), "/x")  # OSError() picks the subclass for the errno
    out = os_error(err)
    assert type(out) is kind and out.message.startswith(text)
