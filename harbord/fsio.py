"""Opening files that someone else dropped, without being led out of the watched folders.

A dropped file (a media file or a sidecar) is read only through :func:`open_source`: it must
resolve (symlinks followed) to a regular file inside one of the given roots, checked on the
name before opening and again on the open descriptor (``/proc/self/fd/N`` names the file
actually opened, so a name swapped between the two checks cannot win). Everything made from
it afterwards (hash, hardlink, reflink, copy) uses that descriptor, never the name again.

Temporary files harbord writes into the library carry the writer's process token
(:func:`temp_name`), so a start-up sweep can remove the ones of processes that are gone
(:func:`sweep_temps`).

One copy each of the durable-write and locking patterns: :func:`fsync_path` (a file or a
folder), :func:`rename_durably` (rename + folder fsync), :func:`write_atomic` (temp file +
fsync + rename + folder fsync), and flock(2) on a lock file: :func:`lock_fd` (the one flock
call, ``False`` when another holds it and the caller will not wait), :func:`try_lock` (a lock
held for a process's life: the vector space's ``writer.lock``), :func:`locked` (a ``with``
block: the ANN's ``save.lock``). ``daemon.lock`` (:mod:`harbord.daemon_lock`) locks its own
open file with :func:`lock_fd`, as it reads and writes the pid through it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harbord.procs import process_alive, process_start_ticks

OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
"""``O_NONBLOCK``: a FIFO dropped in the inbox opens at once (and is then refused as not a
regular file) instead of blocking a thread forever; ``O_NOCTTY``: a tty never becomes ours."""


class Refused(Exception):  # noqa: N818 - a refusal, not an internal error
    """A dropped file harbord will not read: outside the roots after resolving symlinks, or not
    a regular file. The message names the reason (the caller adds the path)."""


class NotRegularFile(Refused):
    """The name resolves to a directory, FIFO, device or socket, not a regular file."""


@dataclass(frozen=True)
class Source:
    """An open dropped file: ``fd`` (read-only descriptor, owned by the caller: close it),
    ``st`` its ``fstat`` when opened, ``real`` the path the descriptor resolves to."""

    fd: int
    st: os.stat_result
    real: str

    @property
    def file_id(self) -> tuple[int, int]:
        """``(st_dev, st_ino)``: which file this is, whatever its name."""
        return (self.st.st_dev, self.st.st_ino)

    def close(self) -> None:
        """Close the descriptor."""
        os.close(self.fd)


def inside(real: str, roots: Sequence[str]) -> bool:
    """True if the resolved path ``real`` is one of ``roots`` (resolved) or below one."""
    return any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots)


def real_roots(roots: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The roots with symlinks resolved (``os.path.realpath``), as strings."""
    return [os.path.realpath(os.fspath(r)) for r in roots]


def job_roots(watch_root: str | None, path: str) -> list[str]:
    """The resolved folders a job's file and its sidecars must lie in: its watched folder
    ``watch_root``, else (``harbord ingest FILE``) the file's own folder. A watched folder's
    resolution is cached for :data:`ROOT_CACHE_SECONDS` (realpath costs an lstat per path
    component, twice per job)."""
    if not watch_root:
        return real_roots([os.path.dirname(os.path.abspath(path))])
    now = time.monotonic()
    hit = _root_cache.get(watch_root)
    if hit is None or now - hit[0] > ROOT_CACHE_SECONDS:
        hit = (now, real_roots([watch_root]))
        _root_cache[watch_root] = hit
    return hit[1]


ROOT_CACHE_SECONDS = 5.0
_root_cache: dict[str, tuple[float, list[str]]] = {}


def open_source(path: str, roots: Sequence[str]) -> Source:
    """Open ``path`` read-only if it resolves to a regular file inside one of ``roots``
    (already resolved: :func:`real_roots`; empty = no containment check).

    Raises Refused (outside the roots, not a regular file), OSError from ``open`` (missing,
    permission denied, ``ELOOP`` for a symlink loop ...).
    """
    if roots:
        # A symlink is resolved and checked before it is opened (opening a device or FIFO
        # outside could have effects); any other name is checked on the opened file below.
        try:
            plain = stat.S_ISREG(os.lstat(path).st_mode)
        except OSError:
            plain = False
        pre = os.path.abspath(path) if plain else os.path.realpath(path)
        if not plain and not inside(pre, roots):
            raise Refused(f"resolves outside the watched folders (to {pre})")
    fd = os.open(path, OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile("not a regular file")
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # no /proc: the check on the name above stands
            real = os.path.realpath(path)
        if roots and not inside(real, roots):
            raise Refused(f"resolves outside the watched folders (to {real})")
    except BaseException:
        os.close(fd)
        raise
    return Source(fd, st, real)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or folder by name (a folder: so the names made in it survive a crash).
    Raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rename_durably(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Rename the finished (already fsynced) file ``tmp`` over ``final`` and fsync the folder,
    so the new name survives a crash. Raises OSError."""
    os.replace(tmp, final)
    fsync_path(os.path.dirname(os.path.abspath(final)))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a crash leaves the old bytes or the new, never a part:
    a temporary file beside it (:func:`temp_name`), fsync, rename, folder fsync. The temporary
    file is removed if any of it fails. Raises OSError (disk full ...)."""
    tmp = temp_name(path)
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        rename_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# locks: flock(2) on a lock file -------------------------------------------------------------
def lock_fd(fd: int, *, shared: bool = False, blocking: bool = True) -> bool:
    """Take an flock on the open file ``fd`` (exclusive, or ``shared``). With ``blocking`` wait
    for it and return True; else return False at once if another open file holds a conflicting
    lock. The lock lasts until :func:`unlock`, or until every descriptor of that open file is
    closed (the process ending included, however it ends). Raises OSError (ENOLCK ...)."""
    op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
    try:
        fcntl.flock(fd, op)
    except BlockingIOError:
        return False
    return True


def unlock(fd: int) -> None:
    """Drop the flock held through ``fd`` (the descriptor stays open)."""
    fcntl.flock(fd, fcntl.LOCK_UN)


def _open_lock_file(path: str | os.PathLike[str]) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)


def try_lock(path: str | os.PathLike[str], *, shared: bool = False) -> int | None:
    """Open (creating) the lock file ``path`` and take its flock without waiting. Returns the
    descriptor holding the lock (close it to release: ``os.close``), or None when another
    process holds a conflicting lock. Raises OSError when the file cannot be opened or locked."""
    fd = _open_lock_file(path)
    try:
        if lock_fd(fd, shared=shared, blocking=False):
            return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


@contextlib.contextmanager
def locked(path: str | os.PathLike[str], *, shared: bool = False, blocking: bool = True) -> Iterator[int]:
    """Hold the flock of the lock file ``path`` (created if missing) for the ``with`` block;
    yields its descriptor. ``blocking``: wait for another holder to let go; else raise
    BlockingIOError at once. Unlocked and closed on the way out. Raises OSError when the file
    cannot be opened or locked."""
    fd = _open_lock_file(path)
    try:
        if not lock_fd(fd, shared=shared, blocking=blocking):
            raise BlockingIOError(errno.EWOULDBLOCK, "locked by another process", os.fspath(path))
        try:
            yield fd
        finally:
            unlock(fd)
    finally:
        os.close(fd)


def fd_path(fd: int) -> str:
    """The ``/proc/self/fd`` name of an open descriptor (for ``linkat`` with
    ``AT_SYMLINK_FOLLOW``, which links the opened file itself, not whatever has its name now)."""
    return f"/proc/self/fd/{fd}"


def link_fd(fd: int, dest: str | os.PathLike[str]) -> None:
    """Hardlink the file open as ``fd`` to ``dest`` (``linkat(AT_FDCWD, "/proc/self/fd/N",
    ..., AT_SYMLINK_FOLLOW)``; os.link uses ``linkat`` with the flag only when a dir fd is
    given). Raises OSError (EXDEV across filesystems, EPERM under protected_hardlinks ...)."""
    root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.link(fd_path(fd), dest, src_dir_fd=root, follow_symlinks=True)
    finally:
        os.close(root)


# temp files ------------------------------------------------------------------------------
_TEMP = re.compile(r"^\..*\.tmp-(\d+)-(\d+)-[0-9a-f]+$")
_token: tuple[int, str] | None = None


def temp_name(final: Path) -> Path:
    """A temporary name beside ``final``: ``.<stem>.tmp-<pid>-<start ticks>-<random>``, so
    :func:`sweep_temps` can tell a live writer's file from a dead one's."""
    global _token
    pid = os.getpid()
    if _token is None or _token[0] != pid:  # (a forked child gets its own)
        _token = (pid, process_start_ticks(pid) or "0")
    return final.parent / f".{final.stem}.tmp-{pid}-{_token[1]}-{secrets.token_hex(6)}"


def sweep_temps(folder: Path) -> list[Path]:
    """Remove the temporary files of dead writers in ``folder`` and its subfolders one level
    down (the library's ``objects/<h[:2]>/``). Returns the paths removed; never raises."""
    removed: list[Path] = []
    try:
        subdirs = [Path(e.path) for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return removed
    for sub in [folder, *subdirs]:
        try:
            entries = list(os.scandir(sub))
        except OSError:
            continue
        for entry in entries:
            match = _TEMP.match(entry.name)
            if match and not process_alive(f"{match[1]}:{match[2]}" if match[2] != "0" else match[1]):
                try:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
                except OSError:
                    continue
    return removed
