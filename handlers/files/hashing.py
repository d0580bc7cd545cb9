"""BLAKE3 hashing of open files, shared by the files capability's steps (checksum, store).

BLAKE3 (https://github.com/BLAKE3-team/BLAKE3, Python binding ``blake3``) with
``max_threads=AUTO`` hashes ~8.7 GB/s on this machine kind (DESIGN.md, "Facts measured"); a file
is streamed through a reused 8 MiB buffer, so memory stays flat for any size.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Sequence
from typing import Any

from blake3 import blake3

from harbord.fsio import NotRegularFile, open_source
from harbord.job import Job

CHUNK = 8 * 1024 * 1024
"""Bytes read per ``readinto`` call (8 MiB)."""
SPARE_BUFFERS = 2
"""Read buffers kept for reuse between files (8 MiB each). A fresh 8 MiB bytearray per file
cost ~0.4 ms of page faults for a 5 MB file here, a third of hashing it."""
_spare: list[bytearray] = []
_spare_lock = threading.Lock()


def _take_buffer() -> bytearray:
    with _spare_lock:
        return _spare.pop() if _spare else bytearray(CHUNK)


def _give_back(buf: bytearray) -> None:
    with _spare_lock:
        if len(_spare) < SPARE_BUFFERS:
            _spare.append(buf)

def hash_fd(fd: int, size_hint: int) -> tuple[str, int]:
    """BLAKE3 hex of everything readable from ``fd`` (from its current offset) and the bytes
    read. ``size_hint`` (bytes) decides whether blake3 may use its threads."""
    # blake3's threads pay off for a file of several chunks; a smaller file is hashed on
    # this thread alone (~10% less CPU for 5 MB here), the jobs running at
    # once being the parallelism then.
    hasher = blake3(max_threads=blake3.AUTO if size_hint > CHUNK else 1)
    buf = _take_buffer()
    read = 0
    try:
        view = memoryview(buf)
        while count := os.readv(fd, [buf]):
            hasher.update(view[:count])
            read += count
        view.release()
    finally:
        _give_back(buf)
    return hasher.hexdigest(), read


def hash_file(path: str, roots: Sequence[str] = ()) -> dict[str, Any]:
    """BLAKE3 of the file at ``path`` (runs in a thread; blake3 releases the GIL), opened with
    :func:`harbord.fsio.open_source` (``roots``: resolved watched folders it must lie in).

    Returns ``{"hash": 64 hex chars, "read": bytes hashed, "before": [size bytes, mtime ns],
    "after": [size bytes, mtime ns], "file_id": [st_dev, st_ino]}``, the fstat of the open file
    before and after reading. Raises OSError if the file cannot be opened or read (a
    non-regular file: IsADirectoryError), Refused if it resolves outside ``roots``.
    """
    try:
        src = open_source(path, roots)
    except NotRegularFile as err:
        raise IsADirectoryError(errno.EISDIR, "not a regular file", path) from err
    try:
        first = src.st
        digest, read = hash_fd(src.fd, first.st_size)
        last = os.fstat(src.fd)
    finally:
        src.close()
    return {
        "hash": digest,
        "read": read,
        "before": [first.st_size, first.st_mtime_ns],
        "after": [last.st_size, last.st_mtime_ns],
        "file_id": [first.st_dev, first.st_ino],
    }


def unchanged(job: Job, size: int, mtime_ns: int) -> bool:
    """True if ``size`` (bytes) and ``mtime_ns`` match what settle recorded in the job.

    A job with ``mtime == 0`` has no settle facts (``harbord ingest`` could not stat the file);
    it counts as unchanged. The mtime comparison allows 1 µs for float rounding.
    """
    if job.mtime == 0.0:
        return True
    return size == job.size and abs(mtime_ns / 1e9 - job.mtime) < 1e-6
