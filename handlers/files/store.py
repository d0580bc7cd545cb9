"""store: keep each distinct content once, at ``<library>/objects/<h[:2]>/<h>.<ext>``.

The object is made the cheapest way the job's action allows: a reflink (``ioctl FICLONE``,
linux/fs.h; btrfs, XFS, bcachefs), a hardlink, or a copy (``copy_file_range``, else a read/write
loop), always from the descriptor of the very file checksum hashed (same device and inode), and
a source with other hardlinks is always copied. Reflinks and copies are written to
``.<h>.tmp-<pid>-<start>-<random>`` in the same folder, fsynced and renamed, so a crash never
leaves a half object under its final name; copies are read-only. A duplicate's source is
removed (``move``) only after the existing object was verified to hold its bytes, and only if
the source is still the file that was stored.

Actions: ``move`` hardlink (copy across filesystems), then the source is removed; ``copy`` an
independent copy (reflink or bytes, never a hardlink), source stays; ``link`` hardlink (copy
across filesystems), source stays; ``keep`` reflink, else hardlink, else copy, source stays.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import stat
import time
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import structlog

from handlers.files.hashing import hash_fd, unchanged
from handlers.files.oserrors import file_errors
from handlers.files.placement import PLANS, make_file, ways_for
from handlers.files.sidecar_store import Kept, keep_sidecars, remove_sources
from harbord import offload
from harbord.errors import DATABASE_BUSY, FileReplacedError, PermanentError, Skip, translate
from harbord.fsio import Source, fsync_path, job_roots, open_source
from harbord.job import Job
from harbord.mediatypes import ext_of
from harbord.txn import flush, ready

if TYPE_CHECKING:  # annotations only: keeps pydantic/sqlite-utils/numpy out of the CPU pool's workers
    from harbord.catalog import Catalog
    from harbord.context import Context


log = structlog.get_logger("harbord.store")


def object_ext(path: str) -> str:
    """The object's extension: the source's, lower-cased; ``bin`` if it has none (or an odd one)."""
    ext = ext_of(path)
    return ext if re.fullmatch(r"[a-z0-9]{1,16}", ext) else "bin"


VERIFY_FULL_BELOW_AGE = 86400.0
"""Seconds: an existing object younger than a day (or never verified) is re-hashed in full
before a duplicate's source may be removed; an older, verified one is checked on its size and
:data:`SAMPLES` sampled blocks."""
SAMPLES = 8
SAMPLE_BYTES = 64 * 1024


def _same_samples(obj_fd: int, src_fd: int, size: int) -> bool:
    """True if :data:`SAMPLES` blocks of :data:`SAMPLE_BYTES` spread over ``size`` bytes are
    equal in both files (first and last block included)."""
    step = max(1, (size - SAMPLE_BYTES) // max(1, SAMPLES - 1))
    for offset in sorted({min(max(0, size - SAMPLE_BYTES), i * step) for i in range(SAMPLES)}):
        if os.pread(obj_fd, SAMPLE_BYTES, offset) != os.pread(src_fd, SAMPLE_BYTES, offset):
            return False
    return True


def _links(path: str) -> int:
    """``st_nlink`` of ``path`` (0 if it cannot be stat'ed)."""
    try:
        return os.stat(path).st_nlink
    except OSError:
        return 0


def verify_object(final: Path, src: Source, want: str, known: dict[str, Any] | None) -> str:
    """Check that the existing object ``final`` holds the bytes of the open source, whose
    BLAKE3 is ``want``. Returns ``"same-file"`` (it is the source's inode), ``"sampled"`` (size
    and sampled blocks equal; object verified before and older than a day), ``"full"`` (re-hashed:
    its BLAKE3 is ``want``) or ``"bad"`` (another size, or other bytes). ``known`` is its
    objects row (``created_at``, ``verified_at`` seconds), None if not catalogued."""
    obj_fd = os.open(final, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(obj_fd)
        if (st.st_dev, st.st_ino) == (src.st.st_dev, src.st.st_ino):
            return "same-file"
        if st.st_size != src.st.st_size:
            return "bad"
        young = known is None or time.time() - float(known.get("created_at") or 0) < VERIFY_FULL_BELOW_AGE
        verified_before = known is not None and known.get("verified_at") is not None
        if not young and verified_before and _same_samples(obj_fd, src.fd, st.st_size):
            return "sampled"
        return "full" if hash_fd(obj_fd, st.st_size)[0] == want else "bad"
    finally:
        os.close(obj_fd)


def place(final: Path, job: Job, roots: list[str], known: dict[str, Any] | None) -> dict[str, Any]:
    """Make the object ``final`` from ``job.path`` per ``job.action`` (runs in a thread).

    The source is opened once (:func:`harbord.fsio.open_source`) and must be the file checksum
    hashed (same device and inode, size and mtime); the object is made from that descriptor.
    An existing object is verified against it (:func:`verify_object`) and replaced if its bytes
    are wrong. Returns ``{"how": "existing"|"repaired"|"link"|"clone"|"copy", "size": object
    bytes, "source_present": bool, "verified": bool (a full re-hash just confirmed it),
    "source": [dev, ino, size, mtime_ns] of the source or None}``. Raises OSError (missing
    source with no object, disk full ...), FileReplacedError if the file is not the one hashed,
    Refused (outside the watched folders).
    """
    try:
        src: Source | None = open_source(job.path, roots)
    except FileNotFoundError:
        src = None
    try:
        if src is not None:
            st = src.st
            if (job.file_id and list(src.file_id) != list(job.file_id)) or \
                    not unchanged(job, st.st_size, st.st_mtime_ns):
                raise FileReplacedError("file was replaced or changed since it was hashed; starting over")
        facts = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns] if src is not None else None
        if os.path.lexists(final):
            if src is None:  # moved away already (a re-run after a crash)
                return {"how": "existing", "size": os.stat(final).st_size, "source_present": False,
                        "verified": False, "source": None}
            check = verify_object(final, src, str(job.file_hash), known)
            if check != "bad":
                return {"how": "existing", "size": src.st.st_size, "source_present": True,
                        "verified": check == "full", "source": facts}
            log.warning("object damaged; replaced", object=str(final), path=job.path)
            make_file(src, final, ("copy",), durable=True)
            return {"how": "repaired", "size": os.stat(final).st_size, "source_present": True,
                    "verified": False, "source": facts}
        if src is None:
            raise FileNotFoundError(errno.ENOENT, "file disappeared", job.path)
        way = make_file(src, final, ways_for(job.action, src.st), durable=job.action == "move")
        return {"how": way, "size": os.stat(final).st_size, "source_present": True,
                "verified": False, "source": facts}
    finally:
        if src is not None:
            src.close()


def remove_source(src: str, final: Path, facts: list[int]) -> bool:
    """For ``move``: delete ``src`` if it is still the file that was stored (same device, inode,
    size and mtime as ``facts``) and ``final`` has its size; the object is then made read-only
    (runs in a thread). Returns False, keeping the source, if it changed since (a writer
    appended to it: the watcher offers the new version). Raises PermanentError if the object is
    missing or its size differs; OSError if unlinking fails."""
    try:
        st = os.stat(src)
    except FileNotFoundError:
        return True
    if [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns] != list(facts):
        return False
    try:
        obj = os.stat(final)
    except FileNotFoundError:
        obj = None
    if obj is None or obj.st_size != st.st_size:
        have = obj.st_size if obj else -1
        raise PermanentError(f"library object {final} has {have} bytes, the source {st.st_size}; source kept")
    if os.path.realpath(src) != os.path.realpath(final):
        os.unlink(src)
        with suppress(OSError):  # best effort: a lost unlink is redone by the next run
            fsync_path(Path(src).parent)
        with suppress(OSError):  # the object is ours alone now
            os.chmod(final, stat.S_IMODE(obj.st_mode) & 0o444)
    return True


class Store:
    """Chain step ``store``: sets ``job.object_path`` and ``job.item_id``.

    Records the object, the item (``catalog.upsert_item``) and the file row, and keeps the
    job's sidecars beside the object (:mod:`handlers.files.sidecar_store`; the item's ``sidecars``
    then name the library copies; a sidecar that cannot be kept is a warning, never a failure).
    Content that
    already has an item is a duplicate: the file row is added, the action applied and
    ``Skip("duplicate", "same content as item N", job)`` raised. Idempotent: an existing object
    of the right size is reused, and a source already moved away (crash after move) is fine.
    Raises RetryableError("disk full ...") on ENOSPC and for a source that changed since
    checksum or a catalog another process keeps locked (``database: ...``), PermanentError for
    other I/O errors (with the system's reason).
    """

    name: ClassVar[str] = "store"

    def __init__(self, catalog: Catalog, library: Path) -> None:
        self.catalog = catalog
        self.library = Path(library)

    @classmethod
    def from_context(cls, ctx: Context) -> Store:
        """Store into ``ctx.config.paths.library``, cataloguing in ``ctx.catalog``."""
        return cls(ctx.catalog, ctx.config.paths.library)

    def object_path(self, job: Job, known: dict[str, Any] | None = None) -> Path:
        """Where ``job``'s content lives: the catalogued path if the object is known (and inside
        the library), else ``<library>/objects/<h[:2]>/<h>.<ext>``. Raises PermanentError if the
        job has no BLAKE3 hash yet."""
        if not job.file_hash or len(job.file_hash) != 64:
            raise PermanentError("no content hash (the checksum step must run before store)")
        known = known or self.catalog.get_object(job.file_hash)
        if known and Path(known["path"]).is_relative_to(self.library):
            return Path(known["path"])
        h = job.file_hash
        return self.library / "objects" / h[:2] / f"{h}.{object_ext(job.path)}"

    def _created_by(self, item_id: int, job: Job) -> bool:
        first = self.catalog.first_job_of_item(item_id)
        return first is None or first == job.id

    async def handle(self, job: Job) -> Job:
        """Store ``job``'s content; see the class docstring."""
        with translate(DATABASE_BUSY):  # the catalog's writes: another process holds the lock
            return await self._store(job)

    async def _store(self, job: Job) -> Job:
        if job.action not in PLANS:
            raise PermanentError(f"unknown action {job.action!r} (move, copy, link or keep)")
        known = self.catalog.get_object(job.file_hash) if job.file_hash else None
        final = self.object_path(job, known)
        assert job.file_hash  # checked by object_path
        roots = job_roots(job.watch_root, job.path)
        with translate(file_errors("cannot store")):
            # inline for a small file unless it is copied (a copy is fsynced: ~3 ms of waiting)
            size = 0 if job.action == "copy" or _links(job.path) > 1 else job.size
            placed = await offload.small_io(size, place, final, job,
                                            roots if job.watch_root else [], known)
        kept: list[Kept] = []
        warnings: list[str] = []
        if job.sidecars:
            kept, warnings = await offload.io(keep_sidecars, job.sidecars, str(final), job.path,
                                              job.action, roots)
        stored = dataclasses.replace(job, object_path=str(final))
        await ready(self.catalog.db)  # the write lock, waited for without blocking the loop
        with self.catalog.db.atomic():  # no await inside: no other job interleaves
            self.catalog.add_object(job.file_hash, placed["size"], final.suffix.lstrip("."), str(final))
            if placed["verified"]:
                self.catalog.object_verified(job.file_hash)
            existing = self.catalog.item_id_for_object(job.file_hash)
            duplicate = existing is not None and not self._created_by(existing, job)
            item_id = (existing if existing is not None and duplicate
                       else self.catalog.upsert_item(stored, existing))
            self.catalog.add_file(stored, item_id, present=placed["source_present"])
            for side in kept:
                self.catalog.add_sidecar(item_id, side.kind, side.source, side.path, side.size, job.id)
            if kept:  # the item's sidecars: its library copies, not the drop folder's files
                stored = dataclasses.replace(stored, sidecars=self.catalog.sidecars_of(item_id))
        if job.action == "move" and placed["source_present"]:
            await flush(self.catalog.db)  # what is known is on disk before the source goes
            with translate(file_errors("cannot remove the source after storing")):
                removed = await offload.small_io(job.size, remove_source, job.path, final, placed["source"])
            if removed:
                await ready(self.catalog.db)
                self.catalog.add_file(stored, item_id, present=False)
            else:
                warnings.append("the file changed after it was stored; left in place (its new "
                                "version is ingested on its own)")
        if job.action == "move" and kept:
            warnings += await offload.io(remove_sources, kept)
        for warning in warnings:
            log.warning("sidecar", job_id=job.id, path=job.path, warning=warning)
        if warnings:
            stored = dataclasses.replace(stored, parsed={**stored.parsed, "warnings": [
                *stored.parsed.get("warnings", []), *warnings]})
        out = dataclasses.replace(stored, item_id=item_id)
        if duplicate:
            raise Skip("duplicate", f"same content as item {item_id}", out)
        return out
