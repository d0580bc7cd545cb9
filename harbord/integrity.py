"""Start-up checks of the catalog database: is the file sound, and does it belong to the library?

The daemon and ``harbord ingest`` (when it runs the chain itself) call :func:`check_catalog`
before they open the database (:func:`harbord.runtime.open_runtime`); a failure is a
:class:`CatalogError` whose one-line message names the database file and the way out (restore
a backup, or ``harbord rebuild-catalog``), which the command line prints and exits 2 on.

Two faults are caught:

- **A damaged file** (bytes overwritten, a torn copy, not a database at all): ``PRAGMA
  quick_check`` (:func:`quick_check`). Without it the daemon started, and then its jobs failed
  one by one with "database disk image is malformed".
- **A catalog that does not belong to the library**: the database is missing, zero-length or
  new (no ``objects`` row) while ``<library>/objects`` holds objects
  (:func:`check_catalog`). Without it a lost ``harbord.db`` started silently empty beside a
  full library: every item, sidecar and vector id forgotten, and the next ``status`` said 0.

How the second is detected, and why not with a marker. The alternative was a marker file in
the library written at first open, holding a catalog id that the database also stores, so a
database from elsewhere would be noticed too. It was not taken: the database has no place for
such an id without a schema migration (a ``meta`` table), and a marker is one more piece of
state that can itself be lost or go stale (a library restored from a backup without it, a
library copied to a new disk) and then refuse a sound catalog. "The catalog has no objects
row and the library has an object file" needs neither: the database side is
``SELECT 1 FROM objects LIMIT 1`` (one b-tree probe), the library side lists
``<library>/objects`` and its two-hex-digit folders only until the first file named like an
object (``<64 hex>.<ext>``), and it is done only when the catalog is empty. It misses a
database restored from an older backup (it holds some objects: that is a legitimate recovery,
the objects stored since are re-found when their files are ingested again) and a database
swapped with another library's non-empty one.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
import time
from pathlib import Path
from urllib.parse import quote

from harbord.errors import CatalogDamagedError, CatalogError, CatalogMismatchError

OBJECT_NAME = re.compile(r"[0-9a-f]{64}\.")
"""How a file in ``<library>/objects/<h[:2]>/`` named after its content starts (objects and
their sidecars alike; temporary files start with a dot)."""
DAMAGED_CODES = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})
"""SQLite result codes (``sqlite3.Error.sqlite_errorname``) that mean the file is damaged."""
QUICK_CHECK_MAX_ERRORS = 3


def recovery_hint(db_path: Path | str) -> str:
    """What to do about a damaged or lost catalog (the README's "Recovery" section)."""
    return (f"restore a backup of {db_path}, or run `harbord rebuild-catalog` to rebuild the "
            "catalog from the library (the damaged file is kept aside)")


def _one_line(text: object, limit: int = 200) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def is_damage(err: BaseException) -> bool:
    """True if ``err`` is SQLite saying the file is corrupt or not a database."""
    name = getattr(err, "sqlite_errorname", None)
    if name is not None:
        return name in DAMAGED_CODES
    text = str(err)
    return "malformed" in text or "not a database" in text


def catalog_error(db_path: Path | str | None, err: sqlite3.Error, doing: str = "") -> CatalogError:
    """The CatalogError for an SQLite error met on ``db_path``, for ``raise ... from err``: a
    damaged file names the recovery (:class:`CatalogDamagedError`), anything else (locked, disk
    I/O, full) says what SQLite said. ``doing`` ("cannot open") prefixes the message."""
    where = f"database {db_path}" if db_path else "database"
    lead = f"{doing} {where}" if doing else where
    if is_damage(err):
        hint = recovery_hint(db_path or "the database")
        return CatalogDamagedError(f"{lead} is damaged ({_one_line(err)}); {hint}")
    return CatalogError(f"{lead}: {_one_line(err)} ({type(err).__name__})")


def _connect(db_path: Path) -> sqlite3.Connection:
    """A connection to an existing database file (never creates one)."""
    return sqlite3.connect(f"file:{quote(str(db_path))}?mode=rw", uri=True, timeout=10.0)


def quick_check(db_path: Path) -> float:
    """Run ``PRAGMA quick_check`` on the database file ``db_path``; returns the seconds it took.

    Raises :class:`CatalogDamagedError` naming the file, SQLite's first complaint and the recovery
    when it fails (or SQLite cannot read the file as a database), CatalogError for other SQLite
    errors. A missing file is not checked (returns 0.0); a zero-length one is an empty database
    to SQLite and passes.

    quick_check reads every page and checks the b-tree structure, record formats and the
    freelist, but not that indexes match their tables (``integrity_check`` does, at about twice
    the cost), so its cost is one read of the file plus a little CPU per cell. Measured with
    ``.venv/bin/pytest -s tests/faults/test_damaged_db.py -k quick_check_cost`` (2 cores, this
    VM's disk): a catalog of 10,003 items copied from the rows a real ingest writes (item,
    object, file, 4 sidecars and the job with its record each: 93.6 MB) takes 0.06-0.11 s with
    the file in the page cache and 1.2-2.0 s cold (evicted with ``posix_fadvise(DONTNEED)``:
    that is the disk read, which also warms the cache for the daemon's own queries). It grows
    with the file, ~1 ms per MB warm and 13-21 ms per MB cold here: 100,000 such items ~1 s
    warm, up to 20 s cold after a reboot. On a disk this slow a cold catalog past a million
    items could outlast systemd's default 90 s start timeout (the unit sets none, and
    ``READY=1`` comes after this check): raise ``TimeoutStartSec=`` then.
    """
    if not db_path.exists():
        return 0.0
    started = time.perf_counter()
    try:
        conn = _connect(db_path)
    except sqlite3.Error as err:
        raise catalog_error(db_path, err, "cannot open") from err
    try:
        rows = conn.execute(f"PRAGMA quick_check({QUICK_CHECK_MAX_ERRORS})").fetchall()
    except sqlite3.Error as err:
        raise catalog_error(db_path, err) from err
    finally:
        conn.close()
    problems = [line.strip() for row in rows if str(row[0]) != "ok" for line in str(row[0]).splitlines()
                if line.strip() and not line.startswith("*** in database")]
    if problems:
        more = f", and {len(problems) - 1} more" if len(problems) > 1 else ""
        detail = f"quick_check: {_one_line(problems[0])}{more}"
        raise CatalogDamagedError(f"database {db_path} is damaged ({detail}); {recovery_hint(db_path)}")
    return time.perf_counter() - started


def catalog_has_objects(db_path: Path) -> bool:
    """True if the database file exists and its ``objects`` table has a row (one index probe).
    A missing or zero-length file, or one without the table yet, has none."""
    if not db_path.exists() or db_path.stat().st_size == 0:
        return False
    try:
        conn = _connect(db_path)
    except sqlite3.Error as err:
        raise catalog_error(db_path, err, "cannot open") from err
    try:
        return conn.execute("SELECT 1 FROM objects LIMIT 1").fetchone() is not None
    except sqlite3.OperationalError as err:
        if "no such table" in str(err):
            return False
        raise catalog_error(db_path, err) from err
    except sqlite3.Error as err:
        raise catalog_error(db_path, err) from err
    finally:
        conn.close()


def first_object(library: Path) -> Path | None:
    """A file in ``<library>/objects/<xx>/`` named like an object or its sidecar, or None;
    stops at the first one found (cheap on a full library, one listing per empty folder)."""
    objects = library / "objects"
    try:
        folders = os.scandir(objects)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise CatalogError(f"cannot list the library's objects {objects}: {err.strerror or err}") from err
    with folders:
        for folder in folders:
            if len(folder.name) != 2 or not folder.is_dir(follow_symlinks=False):
                continue
            try:
                with os.scandir(folder.path) as entries:
                    for entry in entries:
                        if OBJECT_NAME.match(entry.name) and entry.is_file():
                            return Path(entry.path)
            except OSError:
                continue
    return None


def check_catalog(db_path: Path, library: Path) -> None:
    """The start-up check of the daemon and of ``harbord ingest``: the database at ``db_path``
    is sound (:func:`quick_check`) and, if it has no objects, the library has none either.

    Raises :class:`CatalogDamagedError` or :class:`CatalogMismatchError` (one line naming the file and
    the recovery); the database is not modified (a zero-length file stays zero-length).
    """
    quick_check(db_path)
    if catalog_has_objects(db_path):
        return
    found = first_object(library)
    if found is None:
        return  # a new library, or a new catalog for an empty one
    state = ("missing" if not db_path.exists() else
             "empty (0 bytes)" if db_path.stat().st_size == 0 else "empty (no objects)")
    raise CatalogMismatchError(
        f"database {db_path} is {state} but the library {library} holds objects (e.g. {found.name}): "
        f"the catalog was lost or replaced; refusing to start on it. Run `harbord rebuild-catalog` "
        f"to rebuild it from the library, or restore a backup of {db_path}")


def main(argv: list[str]) -> int:
    """``python -m harbord.integrity DB...``: quick_check each database file and print how long
    it took; exit 1 if one is damaged."""
    worst = 0
    for name in argv:
        path = Path(name)
        try:
            seconds = quick_check(path)
        except CatalogError as err:
            print(err)
            worst = 1
            continue
        size = path.stat().st_size / 1e6 if path.exists() else 0.0
        print(f"{path}: ok (quick_check {seconds:.3f} s, {size:.1f} MB)")
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
