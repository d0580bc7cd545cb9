"""store: keep each distinct content once, at ``<library>/objects/<h[:2]>/<h>.<ext>``.

The object is made the cheapest way the job's action allows: a reflink (``ioctl FICLONE``,
linux/fs.h; btrfs, XFS, bcachefs), a hardlink, or a copy (``copy_file_range``, else a read/write
loop). Reflinks and copies are written to ``.<h>.tmp-<random>`` in the same folder, fsynced and
renamed, so a crash never leaves a half object under its final name.

Actions: ``move`` hardlink (copy across filesystems), then the source is removed; ``copy`` an
independent copy (reflink or bytes, never a hardlink), source stays; ``link`` hardlink (copy
across filesystems), source stays; ``keep`` reflink, else hardlink, else copy, source stays.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import structlog

from handlers.checksum import os_error, unchanged
from handlers.media_kinds import ext_of
from handlers.placement import PLANS, fsync_dir, make_file
from handlers.sidecar_store import Kept, keep_sidecars, remove_sources
from harbord import offload
from harbord.errors import PermanentError, RetryableError, Skip
from harbord.job import Job

if TYPE_CHECKING:  # annotations only: keeps pydantic/sqlite-utils/numpy out of the CPU pool's workers
    from harbord.catalog import Catalog
    from harbord.context import Context


log = structlog.get_logger("harbord.store")


def object_ext(path: str) -> str:
    """The object's extension: the source's, lower-cased; ``bin`` if it has none (or an odd one)."""
    ext = ext_of(path)
    return ext if re.fullmatch(r"[a-z0-9]{1,16}", ext) else "bin"


def place(src: str, final: Path, job: Job) -> dict[str, Any]:
    """Make the object ``final`` from ``src`` per ``job.action`` (runs in a thread).

    Returns ``{"how": "existing"|"link"|"clone"|"copy", "size": object bytes, "source_present":
    bool}``. An existing object of the right size is kept as it is. Raises OSError (missing
    source with no object, disk full ...), RetryableError if the source changed since settle.
    """
    try:
        src_st: os.stat_result | None = os.stat(src)
    except FileNotFoundError:
        src_st = None
    if src_st is not None and not unchanged(job, src_st.st_size, src_st.st_mtime_ns):
        raise RetryableError("file changed since it was hashed (size or mtime differ from settle time)")
    want = job.size if job.mtime else (src_st.st_size if src_st else None)
    with suppress(FileNotFoundError):
        size = os.stat(final).st_size
        if want is None or size == want:
            return {"how": "existing", "size": size, "source_present": src_st is not None}
    if src_st is None:
        raise FileNotFoundError(errno.ENOENT, "file disappeared", src)
    way = make_file(src, final, job.action)
    return {"how": way, "size": os.stat(final).st_size, "source_present": True}


def remove_source(src: str, final: Path) -> None:
    """For ``move``: delete ``src`` once ``final`` exists with the same size (runs in a thread).
    Raises PermanentError if the object is missing or its size differs; OSError if unlinking fails."""
    try:
        src_size = os.stat(src).st_size
    except FileNotFoundError:
        return
    try:
        have = os.stat(final).st_size
    except FileNotFoundError:
        have = -1
    if have != src_size:
        raise PermanentError(f"library object {final} has {have} bytes, the source {src_size}; source kept")
    if os.path.realpath(src) != os.path.realpath(final):
        os.unlink(src)
        with suppress(OSError):  # best effort: a lost unlink is redone by the next run
            fsync_dir(Path(src).parent)


class Store:
    """Chain step ``store``: sets ``job.object_path`` and ``job.item_id``.

    Records the object, the item (``catalog.upsert_item``) and the file row, and keeps the
    job's sidecars beside the object (:mod:`handlers.sidecar_store`; the item's ``sidecars``
    then name the library copies; a sidecar that cannot be kept is a warning, never a failure).
    Content that
    already has an item is a duplicate: the file row is added, the action applied and
    ``Skip("duplicate", "same content as item N", job)`` raised. Idempotent: an existing object
    of the right size is reused, and a source already moved away (crash after move) is fine.
    Raises RetryableError("disk full ...") on ENOSPC and for a source that changed since
    checksum, PermanentError for other I/O errors (with the system's reason).
    """

    name: ClassVar[str] = "store"

    def __init__(self, catalog: Catalog, library: Path) -> None:
        self.catalog = catalog
        self.library = Path(library)

    @classmethod
    def from_context(cls, ctx: Context) -> Store:
        """Store into ``ctx.config.paths.library``, cataloguing in ``ctx.catalog``."""
        return cls(ctx.catalog, ctx.config.paths.library)

    def object_path(self, job: Job) -> Path:
        """Where ``job``'s content lives: the catalogued path if the object is known (and inside
        the library), else ``<library>/objects/<h[:2]>/<h>.<ext>``. Raises PermanentError if the
        job has no BLAKE3 hash yet."""
        if not job.file_hash or len(job.file_hash) != 64:
            raise PermanentError("no content hash (the checksum step must run before store)")
        known = self.catalog.get_object(job.file_hash)
        if known and Path(known["path"]).is_relative_to(self.library):
            return Path(known["path"])
        h = job.file_hash
        return self.library / "objects" / h[:2] / f"{h}.{object_ext(job.path)}"

    def _created_by(self, item_id: int, job: Job) -> bool:
        item = self.catalog.get_item(item_id)
        files = item["files"] if item else []
        return not files or files[0]["job_id"] == job.id

    async def handle(self, job: Job) -> Job:
        """Store ``job``'s content; see the class docstring."""
        if job.action not in PLANS:
            raise PermanentError(f"unknown action {job.action!r} (move, copy, link or keep)")
        final = self.object_path(job)
        assert job.file_hash  # checked by object_path
        try:
            placed = await offload.io(place, job.path, final, job)
        except OSError as err:
            raise os_error(err, "cannot store") from err
        kept: list[Kept] = []
        warnings: list[str] = []
        if job.sidecars:
            kept, warnings = await offload.io(keep_sidecars, job.sidecars, str(final), job.path, job.action)
        stored = dataclasses.replace(job, object_path=str(final))
        with self.catalog.db.atomic():  # no await inside: no other job interleaves
            self.catalog.add_object(job.file_hash, placed["size"], final.suffix.lstrip("."), str(final))
            existing = self.catalog.item_id_for_object(job.file_hash)
            duplicate = existing is not None and not self._created_by(existing, job)
            item_id = existing if existing is not None and duplicate else self.catalog.upsert_item(stored)
            self.catalog.add_file(stored, item_id, present=placed["source_present"])
            for side in kept:
                self.catalog.add_sidecar(item_id, side.kind, side.source, side.path, side.size, job.id)
            if kept:  # the item's sidecars: its library copies, not the drop folder's files
                stored = dataclasses.replace(stored, sidecars=self.catalog.sidecars_of(item_id))
                self.catalog.update_item(item_id, {"sidecars": stored.sidecars})
        if job.action == "move" and placed["source_present"]:
            try:
                await offload.io(remove_source, job.path, final)
            except OSError as err:
                raise os_error(err, "cannot remove the source after storing") from err
            self.catalog.add_file(stored, item_id, present=False)
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
