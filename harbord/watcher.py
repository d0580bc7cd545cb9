"""Watch drop folders (watchdog -> asyncio), detect when a file has settled, reconcile at start.

A file is handed on once it has settled:

- it was moved in from elsewhere (a rename into the folder means the writer is done: it
  appears with no writer opening it, and is handed on after a short grace), or
- no writer holds it open (inotify's open/close events; a polling watch cannot tell) and its
  size, mtime and inode stayed the same for ``settle_seconds`` since the last change or close:
  a downloader that opens, appends and closes every second is not done at the first close,

and it is not a partial download (``*.part``, ``*.partial``, ``*.crdownload``, ``*.!qB``,
``*.ytdl``, ``*.tmp``, a file with an ``.aria2`` companion) nor a dotfile/dot-folder. A folder
dropped whole is scanned and each of its files settles on its own. On start, a reconcile pass
offers every file in the watched folders that the catalog and the job table have not seen
(events during downtime are otherwise lost). A watched folder that vanishes (deleted, its
mount gone) is noticed within :data:`ROOT_CHECK_SECONDS`, logged, and watched again with a
reconcile pass once it is back. The settle loop never ends on an error: it logs and goes on.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from harbord.config import WatchConfig

log = structlog.get_logger("harbord.watcher")

MOVED_IN_GRACE_SECONDS = 0.5
"""A file that appears without a writer opening it within this time was moved in whole."""
ROOT_CHECK_SECONDS = 2.0
"""How often the settle loop checks that each watched folder is still the one it watches."""

PARTIAL_SUFFIXES = (".part", ".partial", ".crdownload", ".!qb", ".ytdl", ".tmp", ".aria2")

Submit = Callable[[str, int, float, WatchConfig], bool | None]
"""Called with (path, size in bytes, mtime in seconds, the watch it belongs to) once settled;
returns False if it could not take the file now (database busy): it is offered again later."""


def is_partial(path: Path) -> bool:
    """True for names that mark an unfinished download or a hidden file, or a file whose
    ``<name>.aria2`` control file exists (aria2 is still writing it)."""
    name = path.name
    if name.startswith("."):
        return True
    lower = name.lower()
    if lower.endswith(PARTIAL_SUFFIXES) or ".part-frag" in lower:
        return True
    try:
        return path.with_name(name + ".aria2").exists()
    except OSError:  # e.g. ENAMETOOLONG: a 251+ byte name cannot have a companion
        return False


def hidden_below(path: Path, root: Path) -> bool:
    """True if any component of ``path`` below ``root`` starts with a dot."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return False
    return any(part.startswith(".") for part in parts)


@dataclass
class _Candidate:
    watch: WatchConfig
    size: int
    mtime: float
    changed_at: float
    moved_in: bool
    """Renamed into the folder whole: handed on at ``ready_at`` without waiting to settle."""
    ready_at: float = 0.0
    ino: int = 0
    writer_open: bool = False
    """An open was seen and no close since (inotify only)."""


class Watcher:
    """Turns filesystem events in the watched folders into settled files for ``submit``.

    ``exclude`` are folders never offered (the library and state folders, if they lie inside a
    watched folder). All bookkeeping runs on the event loop; watchdog's thread only forwards.
    """

    def __init__(
        self,
        watches: Sequence[WatchConfig],
        submit: Submit,
        *,
        settle_seconds: float = 2.0,
        exclude: Sequence[Path] = (),
        seen: Callable[[str, int, float], bool] = lambda p, s, m: False,
    ) -> None:
        self.watches = list(watches)
        self.submit = submit
        self.settle_seconds = settle_seconds
        self.exclude = [Path(p) for p in exclude]
        self.seen = seen
        self.candidates: dict[str, _Candidate] = {}
        self._observers: list[BaseObserver] = []
        self._root_ids: list[tuple[int, int] | None] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start observers and the settle loop, then run the reconcile pass."""
        self._loop = asyncio.get_running_loop()
        for watch in self.watches:
            self._root_ids.append(self._root_id(watch))
            self._observers.append(self._observe(watch))
        self._task = asyncio.create_task(self._settle_loop(), name="settle")
        count = self.reconcile()
        log.info("watching", folders=[str(w.path) for w in self.watches], reconcile=count)

    async def stop(self) -> None:
        """Stop observers and the settle loop; unsettled files are found again by reconcile."""
        for observer in self._observers:
            observer.stop()
        for observer in self._observers:
            await asyncio.to_thread(observer.join, 5)
        self._observers.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # events ------------------------------------------------------------------------------
    def on_event(self, event: FileSystemEvent, watch: WatchConfig) -> None:
        """Handle one watchdog event on the loop thread."""
        src = Path(os.fsdecode(event.src_path))
        if isinstance(event, FileMovedEvent | DirMovedEvent):
            self.candidates.pop(str(src), None)
            dest = Path(os.fsdecode(event.dest_path))
            if isinstance(event, DirMovedEvent):
                self._offer_tree(dest, watch, moved_in=True)
            else:
                self.offer(dest, watch, moved_in=True)
        elif isinstance(event, DirCreatedEvent):
            self._offer_tree(src, watch, moved_in=True, grace=MOVED_IN_GRACE_SECONDS)
        elif isinstance(event, FileDeletedEvent):
            self.candidates.pop(str(src), None)
            if src.name.endswith(".aria2"):
                self.offer(src.with_name(src.name[: -len(".aria2")]), watch, moved_in=False)
        elif isinstance(event, FileClosedEvent | FileClosedNoWriteEvent):
            cand = self.candidates.get(str(src))
            if cand is None and isinstance(event, FileClosedEvent):
                self.offer(src, watch, moved_in=False)
            elif cand is not None:
                cand.writer_open = False
                if isinstance(event, FileClosedEvent):  # written: settle from now
                    cand.changed_at = time.monotonic()
                    cand.moved_in = False
                self._kick.set()
        elif isinstance(event, FileCreatedEvent):
            # moved in from outside (or present in a folder moved in) unless a writer opens it
            if str(src) not in self.candidates:
                self.offer(src, watch, moved_in=True, grace=MOVED_IN_GRACE_SECONDS)
        elif isinstance(event, FileOpenedEvent | FileModifiedEvent):
            cand = self.candidates.get(str(src))
            if cand is not None:
                cand.moved_in = False
                cand.changed_at = time.monotonic()
                if isinstance(event, FileOpenedEvent):
                    cand.writer_open = True
            elif isinstance(event, FileModifiedEvent):
                self.offer(src, watch, moved_in=False)

    def offer(self, path: Path, watch: WatchConfig, *, moved_in: bool, grace: float = 0.0) -> None:
        """Start settling ``path`` unless it is excluded, partial, hidden or already seen.

        ``moved_in``: hand it on as soon as it is unchanged ``grace`` seconds from now; else
        once unchanged for ``settle_seconds`` with no writer holding it open.
        """
        try:
            if self._excluded(path, watch) or path.is_dir():
                return
            try:
                st: os.stat_result | None = path.stat()
            except OSError:  # gone, a symlink loop, dangling ...: its own job says why
                st = None
            if st is None and not path.is_symlink():
                return  # gone already
            size, mtime, ino = (st.st_size, st.st_mtime, st.st_ino) if st else (0, 0.0, 0)
            if self.seen(str(path), size, mtime):
                return
        except Exception as err:  # the catalog busy or damaged: settle it; submit decides
            log.warning("cannot check file", path=str(path), error=str(err))
            size, mtime, ino = 0, 0.0, 0
        now = time.monotonic()
        self.candidates[str(path)] = _Candidate(watch, size, mtime, now, moved_in, now + grace, ino)
        self._kick.set()

    def _offer_tree(self, folder: Path, watch: WatchConfig, *, moved_in: bool, grace: float = 0.0) -> None:
        for path in walk_files(folder):
            if str(path) not in self.candidates:
                self.offer(path, watch, moved_in=moved_in, grace=grace)

    def _excluded(self, path: Path, watch: WatchConfig) -> bool:
        if any(path == ex or path.is_relative_to(ex) for ex in self.exclude):
            return True
        return hidden_below(path, watch.path) or is_partial(path)

    # settling ----------------------------------------------------------------------------
    def check(self) -> float:
        """One settle pass: hand on settled files; returns seconds until the next check."""
        now = time.monotonic()
        next_in = max(0.05, self.settle_seconds / 4) if self.candidates else ROOT_CHECK_SECONDS
        for key, cand in list(self.candidates.items()):
            path = Path(key)
            try:
                st = path.stat()
                size, mtime, ino = st.st_size, st.st_mtime, st.st_ino
            except FileNotFoundError:
                if not path.is_symlink():
                    del self.candidates[key]
                    continue
                size, mtime, ino = 0, 0.0, 0  # a dangling symlink settles and fails its own job
            except OSError:
                size, mtime, ino = cand.size, cand.mtime, cand.ino
            if is_partial(path):
                continue
            if (size, mtime, ino) != (cand.size, cand.mtime, cand.ino):
                cand.size, cand.mtime, cand.ino, cand.changed_at = size, mtime, ino, now
                continue
            quiet = now - cand.changed_at
            if (cand.moved_in and now >= cand.ready_at) or (
                    not cand.writer_open and quiet >= self.settle_seconds):
                if self.submit(key, size, mtime, cand.watch) is not False:
                    del self.candidates[key]
                else:
                    next_in = min(next_in, 1.0)  # taken later (database busy)
            elif cand.moved_in:
                next_in = min(next_in, cand.ready_at - now + 0.01)
            elif not cand.writer_open:
                next_in = min(next_in, self.settle_seconds - quiet + 0.01)
        return min(next_in, ROOT_CHECK_SECONDS)

    async def _settle_loop(self) -> None:
        """Settle files and check the roots until cancelled; an error is logged, never fatal."""
        last_root_check = 0.0
        while True:
            delay = 1.0
            try:
                if time.monotonic() - last_root_check >= ROOT_CHECK_SECONDS:
                    last_root_check = time.monotonic()
                    await self.check_roots()
                delay = self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("settle pass failed; going on")
            self._kick.clear()
            try:
                await asyncio.wait_for(self._kick.wait(), timeout=delay)
                await asyncio.sleep(0.05)  # let a burst of events land before checking
            except TimeoutError:
                pass

    # roots -------------------------------------------------------------------------------
    def _root_id(self, watch: WatchConfig) -> tuple[int, int] | None:
        try:
            st = os.stat(watch.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino) if os.path.isdir(watch.path) else None

    def _observe(self, watch: WatchConfig) -> BaseObserver:
        observer: BaseObserver = (
            PollingObserver(timeout=watch.poll_interval) if watch.polling else Observer()
        )
        observer.schedule(_Forward(self, watch), str(watch.path), recursive=watch.recursive)
        observer.start()
        return observer

    async def check_roots(self) -> None:
        """Notice a watched folder that vanished or was replaced (deleted and made again): log
        it, and once it is back, watch the new folder and reconcile it."""
        for index, watch in enumerate(self.watches):
            now_id = self._root_id(watch)
            was = self._root_ids[index]
            if now_id == was:
                continue
            if now_id is None:
                log.warning("watched folder vanished; waiting for it to come back", folder=str(watch.path))
                self._root_ids[index] = None
                continue
            old = self._observers[index]
            old.stop()
            await asyncio.to_thread(old.join, 5)
            self._observers[index] = self._observe(watch)
            self._root_ids[index] = now_id
            log.warning("watched folder is back; watching it again", folder=str(watch.path),
                        reconcile=self.reconcile([watch]))

    # reconcile ---------------------------------------------------------------------------
    def reconcile(self, watches: Sequence[WatchConfig] | None = None) -> int:
        """Offer every unseen file in the watched folders (``watches``, default all; they still
        have to settle). Returns how many files were offered.
        """
        before = len(self.candidates)
        for watch in self.watches if watches is None else watches:
            for path in walk_files(watch.path, recursive=watch.recursive):
                self.offer(path, watch, moved_in=False)
        return len(self.candidates) - before


def walk_files(folder: Path, recursive: bool = True) -> Iterator[Path]:
    """Files (and symlinks) below ``folder`` in name order, not following symlinked folders and
    not entering folders whose name starts with a dot; only ``folder``'s own files unless
    ``recursive``. The one walk of a watched or given folder (the watcher's reconcile and
    moved-in folders, ``harbord ingest FOLDER``)."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            yield Path(dirpath) / name
        if not recursive:
            return


class _Forward(FileSystemEventHandler):
    """Runs in watchdog's thread: forwards events to the loop thread."""

    def __init__(self, watcher: Watcher, watch: WatchConfig) -> None:
        self.watcher = watcher
        self.watch = watch

    def on_any_event(self, event: FileSystemEvent) -> None:
        loop = self.watcher._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.watcher.on_event, event, self.watch)
