"""Making a file in the library: reflink, hardlink or copy, written under a temporary name,
fsynced, then renamed, so a crash never leaves a half file under its final name.

Used by store for objects and for the sidecars kept beside them. Reflink: ``ioctl FICLONE``
(linux/fs.h; btrfs, XFS, bcachefs); copy: ``copy_file_range`` (else a read/write loop).
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
from pathlib import Path

from handlers.checksum import CHUNK
from harbord.errors import PermanentError, RetryableError

FICLONE = 0x40049409
"""``_IOW(0x94, 9, int)`` from linux/fs.h: share the source's extents with the destination."""
NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK})
NO_CLONE = frozenset({errno.EXDEV, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTTY, errno.EBADF})
NO_COPY_RANGE = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})
PLANS = {
    "move": ("link", "copy"), "copy": ("copy",), "link": ("link", "copy"), "keep": ("clone", "link", "copy"),
}
"""Ways to make the object, in order, per action: ``link`` hardlink, ``clone`` reflink only,
``copy`` reflink else a byte copy."""


def fsync_dir(folder: Path) -> None:
    """fsync a folder, so the names created in it survive a crash."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def write_temp(src: str, tmp: Path, way: str) -> bool:
    """Make ``tmp`` by hardlink, reflink (``clone``) or reflink-else-copy; False if ``way`` is
    impossible here (cross-device, unsupported)."""
    if way == "link":
        try:
            os.link(src, tmp)
        except OSError as err:
            if err.errno in NO_LINK:
                return False
            raise
        return True
    with open(src, "rb") as fsrc, open(tmp, "xb") as fdst:
        try:
            fcntl.ioctl(fdst.fileno(), FICLONE, fsrc.fileno())
        except OSError as err:
            if err.errno not in NO_CLONE:
                raise
            if way == "clone":
                return False
            copy_bytes(fsrc.fileno(), fdst.fileno())
        if os.fstat(fdst.fileno()).st_size != os.fstat(fsrc.fileno()).st_size:
            raise RetryableError("file changed while it was copied into the library")
        os.fsync(fdst.fileno())
    return True


def make_file(src: str, final: Path, action: str) -> str:
    """Make ``final`` from ``src`` the first way ``PLANS[action]`` allows, through a temporary
    name in the same folder (created, fsynced, renamed; the folder fsynced). Returns the way
    used (``link``, ``clone`` or ``copy``). Raises OSError (source missing, disk full ...),
    RetryableError if the source changed while copied, PermanentError if no way works."""
    if not final.parent.is_dir():
        final.parent.mkdir(parents=True, exist_ok=True)
        fsync_dir(final.parent.parent)
    tmp = final.parent / f".{final.stem}.tmp-{secrets.token_hex(6)}"
    try:
        for way in PLANS[action]:
            if write_temp(src, tmp, way):
                os.replace(tmp, final)
                fsync_dir(final.parent)
                return way
            tmp.unlink(missing_ok=True)
    finally:
        tmp.unlink(missing_ok=True)
    raise PermanentError(f"no way to store {final.name} for action {action!r}")
