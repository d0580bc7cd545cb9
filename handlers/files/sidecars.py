"""Sidecars: the files beside a media file that belong to it, found and read.

Subtitles (``name.en.srt``, ``name.en.forced.ass``), a yt-dlp ``.info.json`` (field meanings:
yt-dlp's README, "OUTPUT TEMPLATE"), ``.nfo``, ``.xmp``, cover art (``name-poster.jpg``,
``name.jpg``, a folder's ``poster|folder|cover.jpg``) and an Internet Archive ``<id>_meta.xml``
(https://archive.org/developers/metadata-schema/, read with defusedxml). Decided from names
only, with one indexed listing per folder (cached while the folder is unchanged).
"""

from __future__ import annotations

import bisect
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import defusedxml.ElementTree as SafeET

from harbord.fsio import Refused, open_source, real_roots
from harbord.mediatypes import AV_EXTS, PHOTO_EXTS, ext_of

SUBTITLE_EXTS = ("srt", "ass", "ssa", "vtt", "idx", "sub")
ART_EXTS = frozenset({"jpg", "jpeg", "png", "webp"})
FOLDER_ART = ("poster", "folder", "cover")
SUBTITLE_FLAGS = frozenset({"forced", "sdh", "cc", "hi", "default", "full", "signs"})
DESCRIPTION_CHARS = 2000


def _stem(name: str) -> str:
    dot = name.rfind(".")
    return name[:dot] if dot > 0 else name


def _name_kind(name: str) -> str | None:
    """Sidecar kinds recognisable from the name alone: never media items on their own."""
    low = name.lower()
    if low.endswith(".info.json"):
        return "info_json"
    if low.endswith("_meta.xml"):
        return "ia_meta"
    if low.endswith(("_files.xml", "_meta.sqlite", "_reviews.xml")) or low == "__ia_thumb.jpg":
        return "ia_extra"
    ext = ext_of(low)
    return "subtitles" if ext in SUBTITLE_EXTS else {"nfo": "nfo", "xmp": "xmp"}.get(ext)


class _Folder:
    """The file names of one folder (sorted), indexed once for sidecar lookups.

    ``shared``: positions of the names that can be a sidecar of any file in the folder
    (Internet Archive ``_meta.xml``, folder art such as ``poster.jpg``); every other sidecar
    starts with its owner's stem, so :func:`find_sidecars` looks at those plus the run of names
    sharing the file's stem (found by bisection) instead of classifying the whole folder.
    """

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.media: list[str] = []
        self.shared: list[int] = []
        photos: list[str] = []
        for index, name in enumerate(names):
            ext = ext_of(name)
            if ext in AV_EXTS or ext in PHOTO_EXTS:
                (self.media if ext in AV_EXTS else photos).append(name)
            if name.lower().endswith("_meta.xml") or _stem(name).lower() in FOLDER_ART:
                self.shared.append(index)
        self.first = min(self.media or photos, default=None)
        self.stems = {_stem(n): n for n in photos + self.media}  # media win over photos

    def owner(self, name: str, seps: str, media_only: bool) -> str | None:
        """The file whose stem is the longest prefix of ``name`` followed by one of ``seps``."""
        for cut in range(len(name) - 1, 0, -1):
            owner = self.stems.get(name[:cut]) if name[cut] in seps else None
            if owner and owner != name and (not media_only or ext_of(owner) not in PHOTO_EXTS):
                return owner
        return None

    def classify(self, name: str) -> tuple[str, str | None] | None:
        """(kind, owner name or None) if ``name`` is a sidecar in this folder."""
        kind = _name_kind(name)
        if kind is not None:
            return kind, self.first if kind.startswith("ia_") else self.owner(name, ".", False)
        if ext_of(name) not in ART_EXTS or not self.media:
            return None
        if _stem(name).lower() in FOLDER_ART:
            return "cover", min(self.media)
        owner = self.owner(name, ".-", True)
        return ("cover", owner) if owner else None


FOLDER_CACHE_MIN_AGE_NS = 2_000_000_000
"""A folder listing is reused only while the folder's (mtime, ctime) are unchanged and were
already 2 s old (ns) when it was read, so a change in the same timestamp tick cannot hide."""
FOLDER_CACHE_SIZE = 64
_folders: dict[str, tuple[tuple[int, int, int, int], _Folder]] = {}


def _is_file(entry: os.DirEntry[str]) -> bool:
    """``entry.is_file()``, False for an entry that cannot be stat'ed (a symlink loop:
    ``ELOOP``; a name gone meanwhile), so one bad entry never hides the folder's others."""
    try:
        return entry.is_file()
    except OSError:
        return False


def _folder(folder: Path) -> _Folder:
    """The indexed listing of ``folder`` (empty if it is missing or unreadable).

    Every file of a batch lists its folder for sidecars: a fresh listing per file made a folder
    of n files cost O(n^2) (3.0 ms per file at 2,000 files here). A listing is
    reused while the folder is unchanged: same inode, mtime and ctime (ctime also catches a
    tool that adds files and then sets the old mtime back, as ``rsync -a`` does), and only if
    that ctime/mtime was :data:`FOLDER_CACHE_MIN_AGE_NS` old when the listing was read.
    """
    name = str(folder)
    key: tuple[int, int, int, int] | None = None
    try:
        st = os.stat(folder)
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    except OSError:
        pass
    cached = _folders.get(name)
    if key is not None and cached is not None and cached[0] == key:
        return cached[1]
    read_at = time.time_ns()
    try:
        listing = _Folder(sorted(entry.name for entry in os.scandir(folder) if _is_file(entry)))
    except OSError:  # missing, not a folder, unreadable
        return _Folder([])
    if key is not None and read_at - max(key[2], key[3]) >= FOLDER_CACHE_MIN_AGE_NS:
        if len(_folders) >= FOLDER_CACHE_SIZE:
            _folders.clear()  # (atomic; listings run in several threads at once)
        _folders[name] = (key, listing)
    return listing


def is_sidecar(path: Path) -> bool:
    """True if ``path`` is a sidecar (subtitles, ``.info.json``, ``.nfo``, ``.xmp``, Internet
    Archive metadata, or cover art beside a video/audio file) and must not become an item.

    Decided from the name and the names in its folder; never raises (an unreadable folder counts
    as empty).
    """
    return _folder(path.parent).classify(path.name) is not None


def _subtitle_key(name: str, stem: str) -> str:
    import babelfish
    from babelfish import Language

    lang, flags = "und", []
    for part in name[len(stem) + 1:].split(".")[:-1]:
        if part.lower() in SUBTITLE_FLAGS or lang != "und":
            flags.append(part.lower())
            continue
        for convert in (Language.fromietf, Language.fromalpha3b, Language.fromname):
            try:
                lang = str(convert(part if convert is not Language.fromname else part.title()))
                break
            except (ValueError, KeyError, LookupError, babelfish.Error):
                continue
        else:
            flags.append(part.lower())
    return f"subtitles:{lang}" + "".join(f".{f}" for f in flags)


def sidecar_key(name: str, kind: str, owner_stem: str) -> str:
    """The key :func:`find_sidecars` gives the sidecar ``name`` of the media file whose stem is
    ``owner_stem``, from its coarse ``kind`` (``subtitles`` -> ``subtitles:en.forced``)."""
    return _subtitle_key(name, owner_stem) if kind == "subtitles" else kind


def stem_candidates(name: str, seps: str = ".") -> list[str]:
    """The stems a media file owning the sidecar ``name`` could have, longest first: every
    prefix of ``name`` that one of ``seps`` follows (``Movie.2004.de.srt`` -> ``Movie.2004.de``,
    ``Movie.2004``, ``Movie``)."""
    return [name[:i] for i in range(len(name) - 1, 0, -1) if name[i] in seps]


def find_sidecars(path: Path, folder: _Folder | None = None) -> dict[str, str]:
    """Sidecars of the media file ``path``: kind -> absolute path.

    Kinds: ``subtitles:<lang>[.<flag>]`` (``name.en.srt``; ``und`` without a language),
    ``info_json``, ``nfo``, ``xmp``, ``cover`` (``name-poster.jpg``, ``name.jpg``, then folder
    ``poster``/``folder``/``cover`` images) and ``ia_meta`` (``<folder>_meta.xml`` preferred).
    """
    folder = folder or _folder(path.parent)
    found: dict[str, str] = {}
    covers: list[tuple[int, str]] = []
    metas: list[str] = []
    stem = _stem(path.name)
    names = folder.names
    start = end = bisect.bisect_left(names, stem)
    while end < len(names) and names[end].startswith(stem):
        end += 1
    # Only names that can matter are classified, in folder order (see _Folder). Classifying
    # every name cost 2.9 ms per file in a 2,000-file folder (O(n^2) a batch).
    for index in sorted({*range(start, end), *folder.shared}):
        name = names[index]
        got = folder.classify(name)
        if got is None or name == path.name:
            continue
        kind, owner = got
        full = str(path.parent / name)
        if kind == "ia_meta":
            metas.append(full)
        elif kind == "cover" and _stem(name).lower() in FOLDER_ART:
            covers.append((2 + FOLDER_ART.index(_stem(name).lower()), full))
        elif owner != path.name:
            continue
        elif kind == "cover":
            covers.append((0 if name[len(stem):].startswith("-poster") else 1, full))
        elif kind == "subtitles":
            key = _subtitle_key(name, stem)
            found[key if key not in found else f"{key}:{ext_of(name)}"] = full
        elif kind in ("info_json", "nfo", "xmp"):
            found[kind] = full
    if covers:
        found["cover"] = min(covers)[1]
    if metas:
        preferred = [m for m in metas if Path(m).name == f"{path.parent.name}_meta.xml"]
        found["ia_meta"] = (preferred or metas)[0]
    return found


def _trim(text: Any) -> str | None:
    return str(text)[:DESCRIPTION_CHARS] if text else None


def read_info_json(path: Path | BinaryIO) -> dict[str, Any]:
    """The facts harbord keeps from a yt-dlp ``.info.json`` (a path, or a binary file open on
    it): title, uploader, upload_date (ISO date; the file has ``YYYYMMDD``), description (first
    2000 chars), tags, duration (seconds), webpage_url, id, extractor. Raises OSError or
    ValueError if the file is unreadable or not a JSON object, RecursionError if it nests too
    deeply."""
    if isinstance(path, Path):
        with open(path, "rb") as fh:
            data = json.load(fh)
    else:
        data = json.load(path)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    upload = str(data.get("upload_date") or "")
    meta = {
        "kind": "yt-dlp",
        "id": data.get("id"),
        "title": data.get("title") or data.get("fulltitle"),
        "uploader": data.get("uploader") or data.get("channel"),
        "upload_date": f"{upload[:4]}-{upload[4:6]}-{upload[6:8]}" if len(upload) == 8 else None,
        "description": _trim(data.get("description")),
        "tags": [str(t) for t in data.get("tags") or []],
        "duration": data.get("duration") if isinstance(data.get("duration"), int | float) else None,
        "webpage_url": data.get("webpage_url"),
        "extractor": data.get("extractor_key") or data.get("extractor"),
    }
    return {k: v for k, v in meta.items() if v not in (None, "")}


def read_ia_meta(path: Path | BinaryIO) -> dict[str, Any]:
    """The facts harbord keeps from an Internet Archive ``<id>_meta.xml``: identifier, title,
    date, mediatype, description (first 2000 chars) as strings; creator, subject (also split on
    ``;``) and collection as lists (these elements repeat). Parsed with defusedxml. Raises
    OSError, ValueError or SyntaxError (ParseError) if the file is unreadable or not XML."""
    values: dict[str, list[str]] = {}
    for child in SafeET.parse(path).getroot():
        text = (child.text or "").strip()
        if text:
            values.setdefault(str(child.tag), []).append(text)
    meta: dict[str, Any] = {"kind": "internet_archive"}
    for key in ("identifier", "title", "date", "mediatype", "description"):
        if key in values:
            meta[key] = _trim(values[key][0]) if key == "description" else values[key][0]
    for key in ("creator", "subject", "collection"):
        items = [p.strip() for v in values.get(key, []) for p in (v.split(";") if key == "subject" else [v])]
        if items:
            meta[key] = [p for p in items if p]
    return meta


def inspect_folder(path: Path, covers: bool = True, roots: Sequence[str] | None = None) -> dict[str, Any]:
    """What parse needs from the file system about the media file ``path`` (blocking: runs in
    a thread): ``{"missing": True}`` if it is gone; ``{"sidecar": (kind, owner name or None)}``
    if it is itself a sidecar; else ``{"sidecars": kind -> path, "meta": {"info_json"|"ia_meta":
    facts}, "warnings": [unreadable sidecars], "single": it is the folder's only media file}``.
    ``covers=False`` (a photos folder): a picture is never a video's cover art, so a phone's
    ``IMG_0001.jpg`` beside its ``IMG_0001.mov`` stays a photo of its own.

    A sidecar is listed (and read) only if it resolves to a regular file inside ``roots``
    (resolved watched folders; default: the media file's own folder), as media files must
    (:func:`harbord.fsio.open_source`); any other is left out with a warning."""
    if not os.path.lexists(path):
        return {"missing": True}
    folder = _folder(path.parent)
    side = folder.classify(path.name)
    if side is not None and (covers or side[0] != "cover"):
        return {"sidecar": side}
    if roots is None:
        roots = real_roots([os.path.dirname(os.path.abspath(path))])
    sidecars = find_sidecars(path, folder)
    if not covers:
        sidecars.pop("cover", None)
    out: dict[str, Any] = {"sidecars": sidecars, "warnings": [], "meta": {},
                           "single": len(folder.media) <= 1}
    readers = {"info_json": read_info_json, "ia_meta": read_ia_meta}
    for kind, side_path in list(sidecars.items()):
        try:
            src = open_source(side_path, roots)
        except (OSError, Refused) as err:
            del sidecars[kind]
            out["warnings"].append(f"sidecar {side_path}: not kept ({getattr(err, 'strerror', None) or err})")
            continue
        with os.fdopen(src.fd, "rb") as fh:  # read through the descriptor just checked
            if kind not in readers:
                continue
            try:
                out["meta"][kind] = readers[kind](fh)
            except RecursionError:  # '{"a":' * 200000: too deeply nested for json/expat
                out["warnings"].append(f"{kind}: unreadable (nested too deeply)")
            except (OSError, ValueError, SyntaxError) as err:
                out["warnings"].append(f"{kind}: unreadable ({err})")
    return out
