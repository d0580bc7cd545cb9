"""File paths in SQLite, JSON and logs, losslessly.

POSIX file names are bytes; Python decodes the ones that are not valid UTF-8 with
``surrogateescape`` (PEP 383: ``b'x\\xff.mp4'`` -> ``'x\\udcff.mp4'``), which SQLite's UTF-8 text
cannot hold. So a path is stored as TEXT when it is valid UTF-8 and as a BLOB of its
``os.fsencode`` bytes when it is not (SQLite compares a BLOB with a BLOB bytewise, so equality
lookups and UNIQUE constraints work on both). JSON (the job record, events, ``--json`` output)
carries the surrogate escaped as ``\\udcff`` (``json.dumps`` with ``ensure_ascii``), which
:func:`json.loads` turns back into the same path; :func:`display` is the form for people.
"""

from __future__ import annotations

import os


def to_db(path: str) -> str | bytes:
    """``path`` as an SQLite parameter: itself if valid UTF-8, else its file-system bytes."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def from_db(value: str | bytes) -> str:
    """Inverse of :func:`to_db`: a path read back from SQLite as ``str``."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def display(path: str) -> str:
    """A printable form of ``path``: undecodable bytes shown as ``\\xff``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
