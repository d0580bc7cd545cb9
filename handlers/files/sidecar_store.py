"""Keep an item's sidecars beside its object in the library.

The sidecars parse found (subtitles, yt-dlp ``.info.json``, ``.nfo``, ``.xmp``, cover art,
Internet Archive ``_meta.xml``) are made next to the object ``<h>.<ext>`` under the names media
servers read as belonging to it (Kodi/Jellyfin naming, https://kodi.wiki/view/Naming_video_files):
``<h>.en.srt``, ``<h>.en.forced.ass``, ``<h>.info.json``, ``<h>.nfo``, ``<h>-poster.jpg``,
``<h>_meta.xml``. They are made the same way as the object (:data:`handlers.files.placement.PLANS`
for the job's action). With ``move``, a sidecar that belongs to this file alone (its name starts
with the file's stem) is then removed from the drop folder; one shared by the folder
(``poster.jpg``, ``<id>_meta.xml``) stays, since the folder's other files use it too, and the
catalog remembers it so it is not taken for a photo later.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from handlers.files.placement import make_file, ways_for
from harbord.fsio import Source, open_source, real_roots
from harbord.job import Action
from harbord.mediatypes import ext_of


@dataclass(frozen=True)
class Kept:
    """One sidecar made in the library: ``kind`` (as parse names it), ``source`` (where it was
    found), ``path`` (its library copy), ``size`` (bytes), ``own`` (it belongs to this file
    alone and its library copy has the same bytes, so ``move`` may remove the source)."""

    kind: str
    source: str
    path: str
    size: int
    own: bool


def _tag(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "_", text.lower()).strip("_")[:40] or "x"


def library_name(object_path: Path, kind: str, source: str) -> Path:
    """Where the sidecar ``kind`` found at ``source`` is kept for the object ``object_path``."""
    base = object_path.with_suffix("")
    ext = _tag(ext_of(source) or "bin")
    if kind.startswith("subtitles:"):
        tags = ".".join(_tag(t) for t in kind.split(":")[1].split("."))
        suffix = f".{tags}.{ext}"
    else:
        suffix = {"info_json": ".info.json", "nfo": ".nfo", "xmp": ".xmp", "cover": f"-poster.{ext}",
                  "ia_meta": "_meta.xml"}.get(kind, f".{_tag(kind)}.{ext}")
    return base.with_name(base.name + suffix)


def owned_by(source: str, media_path: str, kind: str) -> bool:
    """True if the sidecar at ``source`` belongs to the file ``media_path`` alone (same folder,
    its name starts with the file's stem); folder art and IA metadata are shared."""
    src, media = Path(source), Path(media_path)
    stem = media.name.rpartition(".")[0] or media.name
    return kind != "ia_meta" and src.parent == media.parent and src.name.startswith(stem)


def _same_bytes(src: Source, final: Path) -> bool:
    """True if the library copy ``final`` holds exactly the bytes of the open source."""
    with open(final, "rb") as fh:
        if os.fstat(fh.fileno()).st_size != src.st.st_size:
            return False
        offset = 0
        while block := fh.read(1 << 20):
            if os.pread(src.fd, len(block), offset) != block:
                return False
            offset += len(block)
    return True


def keep_sidecars(sidecars: dict[str, str], object_path: str, media_path: str, action: Action,
                  roots: Sequence[str] | None = None) -> tuple[list[Kept], list[str]]:
    """Make each sidecar (kind -> source path) beside ``object_path`` (runs in a thread).

    A sidecar is read only if it resolves to a regular file inside ``roots`` (resolved watched
    folders; default: the media file's own folder), the rule media files follow
    (:func:`harbord.fsio.open_source`), and its copy is never more readable than its source.
    An existing library copy is kept as it is (the first one kept for a kind wins; a source
    that differs from it is noted and not removed by :func:`remove_sources`). Returns the
    sidecars kept and, for the ones that could not be (outside the watched folders, not a
    regular file, vanished, unreadable, disk full), one warning each naming the file and the
    reason; a sidecar never fails the job.
    """
    if roots is None:
        roots = real_roots([os.path.dirname(os.path.abspath(media_path))])
    kept: list[Kept] = []
    warnings: list[str] = []
    for kind, source in sorted(sidecars.items()):
        final = library_name(Path(object_path), kind, source)
        try:
            same = True
            if not os.path.lexists(source):  # moved already (a re-run after a crash)
                size = os.stat(final).st_size
            else:
                src = open_source(source, roots)
                try:
                    if not final.exists():
                        make_file(src, final, ways_for(action, src.st), durable=action == "move")
                    else:
                        same = _same_bytes(src, final)
                finally:
                    src.close()
                size = os.stat(final).st_size
        except Exception as err:  # OSError, Refused, RetryableError, PermanentError: noted, not fatal
            warnings.append(f"sidecar {source}: not kept ({getattr(err, 'strerror', None) or err})")
            continue
        if not same:
            warnings.append(f"sidecar {source}: a different {kind} is kept for this item already "
                            f"({final}); left in place")
        kept.append(Kept(kind, source, str(final), size, same and owned_by(source, media_path, kind)))
    return kept, warnings


def remove_sources(kept: list[Kept]) -> list[str]:
    """For ``move``: delete the sources of the sidecars this file owned once their library copy
    exists (runs in a thread). Returns one warning per source that could not be removed."""
    warnings: list[str] = []
    for side in kept:
        if not side.own or os.path.realpath(side.source) == os.path.realpath(side.path):
            continue
        try:
            if os.path.exists(side.path):
                os.unlink(side.source)
        except FileNotFoundError:
            pass
        except OSError as err:
            warnings.append(f"sidecar {side.source}: kept in place ({err.strerror or err})")
    return warnings
