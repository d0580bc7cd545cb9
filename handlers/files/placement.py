"""Making a file in the library: reflink, hardlink or copy of an open source (see
:func:`harbord.fsio.open_source`), written under a temporary name, fsynced, then renamed, so a
crash never leaves a half file under its final name.

Used by store for objects and for the sidecars kept beside them. Reflink: ``ioctl FICLONE``
(linux/fs.h; btrfs, XFS, bcachefs); copy: ``copy_file_range`` (else a read/write loop).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
from pathlib import Path

from handlers.files.hashing import CHUNK
from harbord.errors import PermanentError, RetryableError
from harbord.fsio import Source, fsync_path, link_fd, rename_durably, temp_name
from harbord.job import Action

FICLONE = 0x40049409
"""``_IOW(0x94, 9, int)`` from linux/fs.h: share the source's extents with the destination."""
NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK})
NO_CLONE = frozenset({errno.EXDEV, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTTY, errno.EBADF})
NO_COPY_RANGE = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})
PLANS: dict[Action, tuple[str, ...]] = {
    "move": ("link", "copy"), "copy": ("copy",), "link": ("link", "copy"), "keep": ("clone", "link", "copy"),
}
"""Ways to make the object, in order, per action: ``link`` hardlink, ``clone`` reflink only,
``copy`` reflink else a byte copy."""


def copy_bytes(src_fd: int, dst_fd: int) -> None:
    """Copy all of ``src_fd`` to ``dst_fd``: ``copy_file_range``, else a read/write loop."""
    copied = 0
    try:
        while count := os.copy_file_range(src_fd, dst_fd, 1 << 30):
            copied += count
    except OSError as err:
        if copied or err.errno not in NO_COPY_RANGE:
            raise
        with open(src_fd, "rb", closefd=False) as fsrc, open(dst_fd, "wb", closefd=False) as fdst:
            shutil.copyfileobj(fsrc, fdst, CHUNK)


_no_clone_devices: set[int] = set()
"""Devices (``st_dev``) whose file system refused a reflink (ext4: ``EOPNOTSUPP``): not tried
again there, which saved creating and deleting a temp file per object (~0.4 ms on ext4 here)."""


def ways_for(action: Action, st: os.stat_result) -> tuple[str, ...]:
    """The ways :func:`make_file` may try for ``action`` and a source with stat ``st``.

    A source with more than one hardlink (``st_nlink > 1``: the same file has another name,
    perhaps outside the watched folders) is always copied: a hardlink would let writes through
    that other name change the library's object after it was hashed.
    """
    return ("copy",) if st.st_nlink > 1 else PLANS[action]


def write_temp(src: Source, tmp: Path, way: str) -> bool:
    """Make ``tmp`` from the open source by hardlink (of the opened file itself), reflink
    (``clone``) or reflink-else-copy; False if ``way`` is impossible here (cross-device,
    unsupported). A copy gets the source's read bits only (never wider than the source, and
    read-only). Raises RetryableError if the source changed (size, mtime) while copied, or if
    the link is not the opened file."""
    if way == "link":
        try:
            link_fd(src.fd, tmp)
        except OSError as err:
            if err.errno in NO_LINK or err.errno == errno.ENOENT:  # ENOENT: no /proc
                return False
            raise
        made = os.stat(tmp)
        if (made.st_ino, made.st_dev) != (src.st.st_ino, src.st.st_dev):
            raise RetryableError("the file was replaced while it was linked into the library")
        return True
    can_clone = src.st.st_dev not in _no_clone_devices
    if way == "clone" and not can_clone:
        return False
    os.lseek(src.fd, 0, os.SEEK_SET)
    dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            if not can_clone:
                raise OSError(errno.EOPNOTSUPP, "no reflinks here")
            fcntl.ioctl(dst, FICLONE, src.fd)
        except OSError as err:
            if err.errno not in NO_CLONE:
                raise
            if err.errno != errno.EXDEV:
                _no_clone_devices.add(src.st.st_dev)
            if way == "clone":
                return False
            copy_bytes(src.fd, dst)
        now = os.fstat(src.fd)
        if (now.st_size, now.st_mtime_ns) != (src.st.st_size, src.st.st_mtime_ns) or \
                os.fstat(dst).st_size != now.st_size:
            raise RetryableError("file changed while it was copied into the library")
        os.fchmod(dst, stat.S_IMODE(src.st.st_mode) & 0o444)
        os.fsync(dst)
    finally:
        os.close(dst)
    return True


def make_file(src: Source, final: Path, ways: tuple[str, ...], *, durable: bool = False) -> str:
    """Make ``final`` from the open source the first of ``ways`` that works here (see
    :func:`ways_for`), through a temporary name in the same folder (:func:`harbord.fsio.temp_name`:
    created, the bytes of a copy fsynced, renamed). ``durable``: also fsync the folder, so the
    name survives a crash (``move`` needs it before the source goes; for the other actions a
    name lost in a crash is made again, and the fsync costs ~3 ms of waiting here). Returns the
    way used (``link``, ``clone`` or ``copy``). Raises OSError (disk full ...), RetryableError
    if the source changed while copied, PermanentError if no way works."""
    if not os.path.isdir(final.parent):
        final.parent.mkdir(parents=True, exist_ok=True)
        if durable:
            fsync_path(final.parent.parent)
    if src.st.st_dev in _no_clone_devices:
        ways = tuple(way for way in ways if way != "clone")
    if ways and ways[0] == "link":  # a hardlink appears whole: made under its final name at once
        try:
            link_fd(src.fd, final)
        except FileExistsError:
            pass  # made meanwhile (a duplicate in flight): replaced through a temp name below
        except OSError as err:
            if err.errno not in NO_LINK and err.errno != errno.ENOENT:
                raise
            ways = ways[1:]
        else:
            if durable:
                fsync_path(final.parent)
            return "link"
    tmp = temp_name(final)
    try:
        for way in ways:
            if write_temp(src, tmp, way):
                if durable:
                    rename_durably(tmp, final)
                else:
                    os.replace(tmp, final)
                return way
            tmp.unlink(missing_ok=True)
    finally:
        tmp.unlink(missing_ok=True)
    raise PermanentError(f"no way to store {final.name} ({', '.join(ways) or 'link'})")
