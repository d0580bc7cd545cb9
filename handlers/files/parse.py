"""parse: identify a file from its name, its folders and the sidecar files beside it.

guessit (https://github.com/guessit-io/guessit) parses the release name; it is handed the path
relative to the watched folder (at most two parent folders), so ``Show/Season 1/01.mkv`` and
``Movie (2019)/file.mkv`` get their title and year from the folders. A yt-dlp ``.info.json``
and an Internet Archive ``<id>_meta.xml`` beside the file (:mod:`handlers.files.sidecars`) add what
the name lacks.

An audio file's own tags say what it is better than its name does, and probe reads them anyway
(MediaInfo): when probe comes later in the chain (before store), parse leaves such a file's
name to probe (:data:`NAME_PENDING`), which takes title, artist, album, track and year from the
tags and runs guessit on the name only for a file whose tags have no title. guessit costs
~6-10 ms of CPU per name, as much as probing the file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, ClassVar

from handlers.files.media_kinds import media_type_for
from handlers.files.naming import NAME_PENDING, guess, guess_input
from handlers.files.sidecar_store import keep_sidecars, remove_sources
from handlers.files.sidecars import ART_EXTS, inspect_folder, sidecar_key, stem_candidates
from harbord import offload
from harbord.errors import DATABASE_BUSY, PermanentError, Skip, translate
from harbord.fsio import job_roots
from harbord.job import Job
from harbord.mediatypes import AUDIO_EXTS, AV_EXTS, ext_of
from harbord.txn import flush, ready

if TYPE_CHECKING:  # annotations only: keeps pydantic/sqlite-utils/numpy out of the CPU pool's workers
    from harbord.catalog import Catalog
    from harbord.context import Context

# guessit (~80 ms to import, ~0.2 s to build its rules) runs only in the CPU pool: it is imported
# there, in guess(), and babelfish where a subtitle name is read, so the main process and every
# CLI command that only names the handlers do not pay for them.


def tags_later(chain: Sequence[str]) -> bool:
    """Whether, in the chain ``chain``, probe runs after parse and before store (which
    catalogs the item): then parse can leave an audio file's name to probe's tags."""
    if "parse" not in chain or "probe" not in chain:
        return False
    at = chain.index("probe")
    return chain.index("parse") < at and ("store" not in chain or at < chain.index("store"))


class Parse:
    """Chain step ``parse``: fills ``job.parsed``, ``job.media_type`` and ``job.sidecars``.

    Raises Skip("ignored") for a sidecar file (by its name and folder, or because the catalog
    kept it as an item's sidecar already: it may be gone, moved with its media file) and
    PermanentError("file disappeared") if the file is gone; RetryableError("database: ...") if
    another process keeps the catalog locked. Unreadable sidecars are noted in
    ``parsed["warnings"]``, never fatal.
    """

    name: ClassVar[str] = "parse"

    def __init__(self, catalog: Catalog | None = None, *, audio_names_later: bool = False) -> None:
        self.catalog = catalog
        self.audio_names_later = audio_names_later
        """Leave an audio file's name to probe (its tags first; see the module docstring)."""

    @classmethod
    def from_context(cls, ctx: Context) -> Parse:
        """Parse asks the catalog whether a file was kept as a sidecar already, and leaves
        audio names to probe when probe follows in the chain (:func:`tags_later`)."""
        return cls(ctx.catalog, audio_names_later=tags_later(ctx.config.pipeline.handlers))

    async def handle(self, job: Job) -> Job:
        """Identify ``job.path``; see the class docstring."""
        with translate(DATABASE_BUSY):  # the catalog's sidecar look-ups and late sidecars' writes
            return await self._identify(job)

    async def _identify(self, job: Job) -> Job:
        path = Path(job.path)
        photos = job.source == "photos"  # there a picture is a photo, never a video's cover
        seen = await offload.io(inspect_folder, path, not photos, job_roots(job.watch_root, job.path))
        kept_by = self.catalog.sidecar_item(job.path) if self.catalog is not None else None
        if kept_by is not None:  # moved with its media file, or a folder's poster.jpg left behind
            raise Skip("ignored", f"kept as a sidecar of item {kept_by}", job)
        if seen.get("missing"):
            raise PermanentError("file disappeared")
        if "sidecar" in seen:
            kind, owner = seen["sidecar"]
            if self.catalog is not None:
                await self._keep_late(job, kind, owner)
            if owner is None:
                raise Skip("ignored", f"{kind} sidecar with no media file beside it", job)
            raise Skip("ignored", f"sidecar of {path.parent / owner}", job)
        if self.catalog is not None and not photos and ext_of(path.name) in ART_EXTS:
            await self._keep_late(job, "cover", None)  # a video's cover art, come after it left
        root = PurePath(job.watch_root) if job.watch_root else None
        ytdlp, ia = seen["meta"].get("info_json"), seen["meta"].get("ia_meta")
        name = guess_input(path, root)
        if self.audio_names_later and ext_of(path.name) in AUDIO_EXTS and not (ytdlp or ia):
            parsed: dict[str, Any] = {NAME_PENDING: name}  # probe names it: tags, else guessit
        else:
            parsed = await offload.cpu(guess, name)
        if ext_of(path.name):
            parsed.setdefault("container", ext_of(path.name))
        if ytdlp and ytdlp.get("title"):
            parsed["guessit_title"], parsed["title"] = parsed.get("title"), ytdlp["title"]
        elif ia and ia.get("title") and (seen["single"] or not parsed.get("title")):
            parsed["guessit_title"], parsed["title"] = parsed.get("title"), ia["title"]
            if "year" not in parsed and str(ia.get("date", ""))[:4].isdigit():
                parsed["year"] = int(str(ia["date"])[:4])
        if ytdlp or ia:
            parsed["source_meta"] = ytdlp or ia
        if seen["warnings"]:
            parsed["warnings"] = seen["warnings"]
        media_type = media_type_for(ext_of(path.name), parsed, from_ytdlp=bool(ytdlp), source=job.source)
        return dataclasses.replace(job, parsed=parsed, media_type=media_type, sidecars=seen["sidecars"])

    async def _keep_late(self, job: Job, kind: str, owner: str | None) -> None:
        """A sidecar that arrived after its media file was stored (subtitles fetched later,
        beside a kept file or in the drop folder the file has left; an image named after a
        stored video, ``name.jpg``/``name-poster.jpg``, is its cover): keep it with that item
        now, as store would have (the job's action; ``move`` takes it out of the folder), and
        raise Skip("ignored") saying so. Returns if the media file is not catalogued (yet):
        its own store step keeps the sidecar then."""
        assert self.catalog is not None
        path = Path(job.path)
        if kind.startswith("ia_"):
            return  # shared by the folder's files: store keeps it with each
        owner_path: str | None = str(path.parent / owner) if owner else None
        if owner is None:  # the media file has left the folder: find it in the catalog
            seps = ".-" if kind == "cover" else "."  # name-poster.jpg, name.jpg
            owner_path = next((found for stem in stem_candidates(path.name, seps)
                               for found, _ in self.catalog.files_named(str(path.parent), stem)
                               if kind != "cover" or ext_of(found) in AV_EXTS), None)
        item_id = self.catalog.item_id_for_path(owner_path) if owner_path else None
        item = self.catalog.get_item(item_id) if item_id is not None else None
        if owner_path is None or item is None or not item.get("object"):
            return
        key = sidecar_key(path.name, kind, Path(owner_path).stem)
        kept, warnings = await offload.io(keep_sidecars, {key: job.path}, item["object"]["path"],
                                          owner_path, job.action, job_roots(job.watch_root, job.path))
        if not kept:
            raise Skip("ignored", f"sidecar of item {item['id']}, not kept: {'; '.join(warnings)}", job)
        await ready(self.catalog.db)
        with self.catalog.db.atomic():
            for side in kept:
                self.catalog.add_sidecar(item["id"], side.kind, side.source, side.path, side.size, job.id)
        if job.action == "move":
            await flush(self.catalog.db)  # the sidecar is catalogued before its source goes
            warnings += await offload.io(remove_sources, kept)
        note = f" ({'; '.join(warnings)})" if warnings else ""
        raise Skip("ignored", f"kept as the {key} sidecar of item {item['id']}{note}", job)
