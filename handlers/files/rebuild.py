"""``harbord rebuild-catalog``: make a new catalog from what the library holds.

For a catalog database that is damaged (:mod:`harbord.integrity`) or lost, with no backup to
restore. The library is content-addressed, so it says on its own which contents were stored
and which sidecars belong to each: ``<library>/objects/<h[:2]>/<h>.<ext>`` is the content
whose BLAKE3 is ``h``, and ``<h>.en.srt``, ``<h>.info.json``, ``<h>.nfo``, ``<h>.xmp``,
``<h>-poster.jpg``, ``<h>_meta.xml`` beside it are its sidecars (the names
:func:`handlers.files.sidecar_store.library_name` gives them).

What it recovers, in a new database (the current schema):

- ``objects``: one row per object file whose content still hashes to its name (each is read
  and hashed again, so ``verified_at`` is set; a file that does not match is reported and
  left out, and left where it is);
- ``items``: one per recovered object, ``media_type`` from the extension (a video is
  ``video``, or ``movie``/``episode`` only once its file is ingested again), ``source``
  ``rebuild``, ``probe`` re-run on the object (``--no-probe``: left empty) and the title
  (and year) from the file's own tags when it has them (music, many videos);
- ``sidecars``: one row per sidecar file beside a recovered object, its kind read back from
  its name; ``.info.json``, ``.nfo`` and the others are recorded as files, not read.

What it cannot recover: original file names and paths (``files`` rows), hence titles,
seasons and episodes parsed from names, and the yt-dlp/Internet Archive facts parse had taken
from the sidecars; item ids (items are numbered anew, in hash order); the job table (history,
failures); user-edited fields; enrichment; the MQTT outbox (events not yet delivered); the id
map of the embedding vectors. ``harbord reindex`` cannot bring search back: it rebuilds an
index from that id map. Ingesting the original files again (``harbord ingest``, or the daemon
finding them in a watched folder) restores their names, titles and files rows and embeds the
items again; the objects are not copied a second time.

The damaged database is never deleted: it is renamed ``harbord.db.damaged-<UTC time>`` (its
``-wal`` with it, as ``harbord.db.damaged-<UTC time>-wal``, so ``sqlite3`` can still open the
pair to salvage rows). The new catalog is built in ``harbord.db.rebuild-tmp`` and renamed into
place only when complete, so an interrupted rebuild leaves the old file where it was.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from harbord import daemon_lock
from harbord.config import Config, ensure_dirs
from harbord.errors import CatalogDamagedError, CatalogError
from harbord.fsio import fsync_path, rename_durably
from harbord.integrity import catalog_has_objects, quick_check

OBJECT_FILE = re.compile(r"([0-9a-f]{64})\.([a-z0-9]{1,16})")
"""An object's name: ``<BLAKE3 hex>.<ext>`` (see :func:`handlers.files.store.object_ext`)."""
HASH_LEAD = re.compile(r"([0-9a-f]{64})([._-].*)")
SUBTITLE_EXTS = frozenset({"srt", "ass", "ssa", "vtt", "idx", "sub"})
SIDECAR_ONLY_EXTS = frozenset({"nfo", "xmp", *SUBTITLE_EXTS})
"""Extensions of files that are never objects: parse never makes an item of an ``.nfo``,
``.xmp`` or subtitle file, so ``<h>.nfo`` beside ``<h>.mkv`` is its sidecar."""
TMP_NAME = "harbord.db.rebuild-tmp"
SOURCE: Final = "rebuild"
"""The recovered items' ``source`` (a :data:`harbord.job.JobSource`)."""


@dataclass
class Found:
    """An object file of the library and the sidecar files beside it (kind -> path)."""

    hash: str
    path: Path
    ext: str
    sidecars: dict[str, Path] = field(default_factory=dict)


@dataclass
class Report:
    """What a rebuild did: the counts, the damaged file's new name, and the files it left out
    (each with the reason)."""

    db: str
    moved_to: str | None = None
    items: int = 0
    objects: int = 0
    bytes: int = 0
    sidecars: int = 0
    mismatched: list[dict[str, str]] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    probe_failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` output."""
        return dict(self.__dict__)


def sidecar_kind(rest: str) -> str | None:
    """The kind of the sidecar named ``<h>`` + ``rest`` (the inverse of
    :func:`handlers.files.sidecar_store.library_name`), or None if ``rest`` is no sidecar name:
    ``.info.json`` info_json, ``.nfo``, ``.xmp``, ``-poster.jpg`` cover, ``_meta.xml`` ia_meta,
    ``.en.forced.srt`` subtitles:en.forced, ``.<kind>.<ext>`` any other kind."""
    fixed = {".info.json": "info_json", ".nfo": "nfo", ".xmp": "xmp", "_meta.xml": "ia_meta"}
    if rest in fixed:
        return fixed[rest]
    if rest.startswith("-poster.") and rest.count(".") == 1:
        return "cover"
    parts = rest.split(".")
    if rest.startswith(".") and len(parts) >= 3 and all(parts[1:]):
        tags, ext = parts[1:-1], parts[-1]
        if ext in SUBTITLE_EXTS:
            return f"subtitles:{'.'.join(tags)}"
        return tags[0] if len(tags) == 1 else None
    return None


def scan_library(library: Path) -> tuple[list[Found], list[str], list[str]]:
    """The objects under ``<library>/objects`` with their sidecars, sorted by hash; also the
    sidecar-like files with no object beside them (orphans) and the files that are neither
    (unknown; temporary ``.<h>.tmp-*`` files left by a crash are skipped)."""
    found: dict[str, Found] = {}
    side: list[tuple[str, str, Path]] = []
    unknown: list[str] = []
    for path in _files(library / "objects"):
        name = path.name
        if name.startswith("."):
            continue
        obj = OBJECT_FILE.fullmatch(name)
        if obj and obj.group(2) not in SIDECAR_ONLY_EXTS and obj.group(1) not in found:
            found[obj.group(1)] = Found(obj.group(1), path, obj.group(2))
            continue
        lead = HASH_LEAD.fullmatch(name)
        if lead and sidecar_kind(lead.group(2)) is not None:
            side.append((lead.group(1), lead.group(2), path))
        else:
            unknown.append(str(path))
    orphans: list[str] = []
    for file_hash, rest, path in sorted(side):
        owner = found.get(file_hash)
        kind = sidecar_kind(rest)
        if owner is None or kind is None or owner.path.parent != path.parent:
            orphans.append(str(path))
            continue
        key = kind if kind not in owner.sidecars else f"{kind}:{path.suffix.lstrip('.')}"
        owner.sidecars[key] = path
    return sorted(found.values(), key=lambda f: f.hash), orphans, unknown


def _files(objects: Path) -> Iterator[Path]:
    try:
        folders = sorted(os.scandir(objects), key=lambda e: e.name)
    except FileNotFoundError:
        return
    except OSError as err:
        raise CatalogError(f"cannot list {objects}: {err.strerror or err}") from err
    for folder in folders:
        if not folder.is_dir(follow_symlinks=False):
            continue
        with os.scandir(folder.path) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_file(follow_symlinks=False):
                    yield Path(entry.path)


def _examine(found: Found, probe: bool) -> dict[str, Any]:
    """Hash the object (and probe it): runs in a thread (blake3 and libmediainfo release the
    GIL). Returns ``{"hash", "size"}`` plus ``"probe"`` or ``"probe_error"``; ``"error"`` when
    it cannot be read."""
    from handlers.files.hashing import hash_file
    from handlers.files.media_kinds import media_type_for
    from handlers.files.probe import KIND, probe_file
    from harbord.errors import MediaError

    try:
        facts = hash_file(str(found.path))
    except OSError as err:
        return {"error": err.strerror or str(err)}
    out: dict[str, Any] = {"hash": facts["hash"], "size": facts["read"], "verified_at": time.time()}
    if probe and facts["hash"] == found.hash:
        kind = KIND.get(media_type_for(found.ext, {}), "other")
        try:
            out["probe"] = probe_file(str(found.path), kind)
        except MediaError as err:
            out["probe_error"] = str(err)
        except OSError as err:
            out["probe_error"] = err.strerror or str(err)
        except Exception as err:  # a library failing on odd bytes must not stop the rebuild
            out["probe_error"] = f"{type(err).__name__}: {err}"
    return out


def _item_job(found: Found, facts: dict[str, Any]) -> Any:
    """The Job record an item is catalogued from (:meth:`harbord.catalog.Catalog.upsert_item`)."""
    from handlers.files.media_kinds import media_type_for
    from harbord.job import Job

    probe: dict[str, Any] = facts.get("probe") or {}
    tags = probe.get("tags") or {}
    parsed: dict[str, Any] = {"container": found.ext, "recovered_by": "rebuild-catalog"}
    if tags.get("title"):
        parsed["title"] = str(tags["title"])
    date = str(tags.get("date") or "")
    if date[:4].isdigit() and (len(date) == 4 or not date[4].isdigit()):
        parsed["year"] = int(date[:4])
    media_type = media_type_for(found.ext, {}, from_ytdlp="info_json" in found.sidecars)
    return Job(id=f"rebuild-{found.hash[:24]}", path=str(found.path), source=SOURCE, size=facts["size"],
               parsed=parsed, media_type=media_type, probe=probe, file_hash=found.hash,
               object_path=str(found.path),
               sidecars={kind: str(path) for kind, path in sorted(found.sidecars.items())})


def _damage(db_path: Path) -> str | None:
    """Why ``db_path`` needs rebuilding ("missing", "empty", "damaged: ...", "no objects"), or
    None if it is sound and holds objects. Raises CatalogError when SQLite cannot tell (the
    file is locked by a ``harbord ingest`` running, an I/O error)."""
    if not db_path.exists():
        return "missing"
    if db_path.stat().st_size == 0:
        return "empty"
    try:
        quick_check(db_path)
        return None if catalog_has_objects(db_path) else "no objects"
    except CatalogDamagedError as err:
        return f"damaged: {err}"


def _aside(db_path: Path, label: str) -> Path:
    """Rename the database (and its ``-wal``/``-shm``) to ``<name>.<label>-<UTC time>``; never
    overwrites a file. Returns the new name of the database."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = db_path.with_name(f"{db_path.name}.{label}-{stamp}")
    n = 1
    while any(Path(f"{target}{s}").exists() for s in ("", "-wal", "-shm")):
        n += 1
        target = db_path.with_name(f"{db_path.name}.{label}-{stamp}.{n}")
    for suffix in ("-wal", "-shm", ""):  # the database last: a crash leaves it with its WAL
        src = Path(f"{db_path}{suffix}")
        if src.exists():
            os.rename(src, f"{target}{suffix}")
    return target


def _remove_tmp(tmp: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)


class _NewCatalog:
    """The new database being written at ``tmp``: one transaction for all rows, then a single
    file (journal mode DELETE; the daemon switches it back to WAL when it opens it)."""

    def __init__(self, tmp: Path, report: Report) -> None:
        from harbord.catalog import Catalog, open_db

        _remove_tmp(tmp)
        self.tmp, self.report = tmp, report
        self.db = open_db(tmp)
        self.catalog = Catalog(self.db)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(objects)").fetchall()}
        self.verified = "verified_at" in columns  # each object was just re-hashed (migration 5)
        self.db.execute("BEGIN")

    def add(self, found: Found, facts: dict[str, Any]) -> None:
        """Catalogue one verified object: its object row, item and sidecars."""
        catalog, report = self.catalog, self.report
        catalog.add_object(found.hash, facts["size"], found.ext, str(found.path))
        if self.verified:
            self.db.execute("UPDATE objects SET verified_at = ? WHERE hash = ?",
                            [facts["verified_at"], found.hash])
        item_id = catalog.upsert_item(_item_job(found, facts))
        for kind, path in sorted(found.sidecars.items()):
            try:
                size = path.stat().st_size
            except OSError:  # gone since the library was listed
                report.orphans.append(str(path))
                continue
            catalog.add_sidecar(item_id, kind, str(path), str(path), size, None)
            report.sidecars += 1
        report.items += 1
        report.objects += 1
        report.bytes += int(facts["size"])

    def finish(self) -> None:
        """Commit, leave one file on disk (fsynced) and close."""
        try:
            self.db.execute("COMMIT")
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.execute("PRAGMA journal_mode=DELETE")
        finally:
            self.db.close()
        fsync_path(self.tmp)

    def abandon(self) -> None:
        """Close and remove the unfinished file."""
        try:
            self.db.close()
        finally:
            _remove_tmp(self.tmp)


def rebuild_catalog(config: Config, *, probe: bool = True, force: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> Report:
    """Rebuild ``config.db_path`` from ``config.paths.library``; see the module docstring.

    ``probe``: run probe on each object (MediaInfo/EXIF, ~4 ms per file); ``force``: rebuild
    even a sound catalog that holds objects (it is kept aside as ``harbord.db.replaced-<time>``).
    ``progress(done, total)`` is called as objects are verified. Holds the daemon lock all
    along, so no daemon starts meanwhile. Raises CatalogError when a daemon runs, when the
    catalog is sound and ``force`` is not given, or when the new catalog cannot be written
    (the old file is then left in place).
    """
    started = time.perf_counter()
    db_path = Path(config.db_path)
    ensure_dirs(config)
    pid = daemon_lock.running_pid(config.paths.state)
    if pid is not None:
        raise CatalogError(f"a harbord daemon (pid {pid or '?'}) runs on {config.paths.state}: "
                           "stop it before rebuilding the catalog")
    lock = daemon_lock.hold(config.paths.state)  # a daemon started just now: HarbordError
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # `harbord ingest` wakes "the daemon"
    try:
        why = _damage(db_path)
        if why is None and not force:
            raise CatalogError(
                f"database {db_path} passes quick_check and holds objects: nothing to rebuild. "
                "Rebuilding loses what only it knows (file names, job history, edits); "
                "give --force to do it anyway (the current file is kept aside)")
        found, orphans, unknown = scan_library(config.paths.library)
        report = Report(db=str(db_path), orphans=orphans, unknown=unknown)
        new = _NewCatalog(db_path.with_name(TMP_NAME), report)
        try:
            with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
                for done, (item, facts) in enumerate(
                        zip(found, pool.map(lambda f: _examine(f, probe), found), strict=True), 1):
                    if progress is not None:
                        progress(done, len(found))
                    if "error" in facts:
                        report.unreadable.append({"path": str(item.path), "error": facts["error"]})
                    elif facts["hash"] != item.hash:
                        report.mismatched.append({"path": str(item.path), "hash": facts["hash"]})
                        report.orphans.extend(str(p) for p in item.sidecars.values())
                    else:
                        if "probe_error" in facts:
                            report.probe_failed.append({"path": str(item.path),
                                                        "error": str(facts["probe_error"])})
                        new.add(item, facts)
            new.finish()
            if db_path.exists() or Path(f"{db_path}-wal").exists():
                report.moved_to = str(_aside(db_path, "replaced" if why is None else "damaged"))
            rename_durably(new.tmp, db_path)
        except BaseException:
            new.abandon()
            raise
    except OSError as err:
        raise CatalogError(f"cannot rebuild {db_path}: {err.strerror or err}") from err
    finally:
        signal.signal(signal.SIGUSR1, previous)
        lock.close()
    report.seconds = round(time.perf_counter() - started, 3)
    return report
