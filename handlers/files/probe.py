"""probe: technical facts of a media file (duration, codecs, resolution, EXIF).

Audio/video facts come from MediaInfo (https://mediaarea.net/en/MediaInfo) through pymediainfo,
whose wheel bundles libmediainfo; photo facts from EXIF via exifread
(https://github.com/ianare/exif-py), image size from MediaInfo. Both run in the CPU pool.

A music file's tags name its item: their title (and artist, album, track, year) go into
``job.parsed``. When parse left the name to probe (:data:`handlers.files.naming.NAME_PENDING`), guessit
reads the name, in the same pool call, only if the tags have no title.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import mimetypes
import os
import re
import stat
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, TypeAlias

from handlers.files.media_kinds import media_type_for
from handlers.files.naming import NAME_PENDING
from handlers.files.oserrors import file_errors
from harbord import offload
from harbord.errors import MediaError, PermanentError, translate
from harbord.job import Job
from harbord.mediatypes import ext_of

if TYPE_CHECKING:  # annotations only: keeps pydantic/sqlite-utils/numpy out of the CPU pool's workers
    from harbord.context import Context

# pymediainfo and exifread (~50 ms to import) are used only in the CPU pool: imported in the
# functions that run there, not by the main process.

NO_AV = "no audio or video track found; corrupt or not a media file"
KIND = {"movie": "av", "episode": "av", "video": "av", "music": "av", "photo": "photo"}


def _num(value: Any) -> float | None:
    """A number from a MediaInfo field ("25.000", 1000, "8 / 6" -> first number) or None."""
    match = re.match(r"\s*(-?\d+(?:\.\d+)?)", str(value)) if value is not None else None
    return float(match.group(1)) if match else None


def _int(value: Any) -> int | None:
    number = _num(value)
    return None if number is None else int(number)


def _clean(facts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in facts.items() if v not in (None, "", [], {})}


PARSE_SPEED = 0.0
"""MediaInfo's ``ParseSpeed``: 0 reads headers and indexes only. The default (0.5) scans much
of a Matroska file: ~100x as long for a 0.5 GB mkv here, for the same tracks."""


Source: TypeAlias = str | BinaryIO
"""What MediaInfo reads: a file name, or the opened file itself (see :func:`_read_facts`)."""


def _av_facts(source: Source) -> dict[str, Any]:
    from pymediainfo import MediaInfo

    info = MediaInfo.parse(source, parse_speed=PARSE_SPEED)
    general = info.general_tracks[0] if info.general_tracks else None
    g = general.to_data() if general is not None else {}
    video = [_clean({
        "codec": t.format, "profile": t.format_profile, "width": _int(t.width), "height": _int(t.height),
        "frame_rate": _num(t.frame_rate), "bit_depth": _int(t.bit_depth), "bitrate": _int(t.bit_rate),
        "scan_type": t.scan_type, "hdr": t.hdr_format,
    }) for t in info.video_tracks]
    audio = [_clean({
        "codec": t.format, "profile": t.format_profile, "channels": _int(t.channel_s),
        "sample_rate": _int(t.sampling_rate), "language": t.language,
        "bit_depth": _int(t.bit_depth), "bitrate": _int(t.bit_rate),
    }) for t in info.audio_tracks]
    subtitles = [_clean({"codec": t.format, "language": t.language, "title": t.title})
                 for t in info.text_tracks]
    durations = [_num(t.duration) or 0.0 for t in info.tracks]
    duration_ms = _num(g.get("duration")) or max(durations, default=0.0)
    tags = _clean({
        "title": g.get("title") or g.get("track_name"), "artist": g.get("performer"),
        "album": g.get("album"), "album_artist": g.get("album_performer"),
        "track": _int(g.get("track_name_position")), "genre": g.get("genre"),
        "date": g.get("recorded_date"),
    })
    return _clean({
        "duration": round(duration_ms / 1000, 3) if duration_ms else None,
        "container": g.get("format"), "bitrate": _int(g.get("overall_bit_rate")),
        "video": video, "audio": audio, "subtitles": subtitles, "tags": tags,
    })


def warm_worker() -> None:
    """CPU pool start-up hook (see :func:`harbord.capability.pool_setup`): import pymediainfo and
    exifread and load libmediainfo once, before the first file; then :func:`gc.freeze`, as
    :func:`handlers.files.naming.warm_worker` does."""
    import exifread  # noqa: F401
    from pymediainfo import MediaInfo

    MediaInfo.can_parse()
    gc.freeze()


def _taken_at(tags: dict[str, Any]) -> str | None:
    for key, offset in (("EXIF DateTimeOriginal", "EXIF OffsetTimeOriginal"), ("Image DateTime", "")):
        text = re.sub(r"^(\d{4}):(\d\d):(\d\d)", r"\1-\2-\3", str(tags.get(key, "")).strip())
        try:
            when = datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S").isoformat()
        except ValueError:
            continue  # missing, or the "0000:00:00 00:00:00" some cameras write
        return when + str(tags.get(offset, "")).strip()
    return None


def _photo_facts(source: Source) -> dict[str, Any]:
    import exifread
    from exifread.utils import get_gps_coords
    from pymediainfo import MediaInfo

    with open(source, "rb") if isinstance(source, str) else contextlib.nullcontext(source) as fh:
        try:
            tags = exifread.process_file(fh, details=False, builtin_types=True)
        except Exception:  # exifread raises assorted errors on damaged EXIF; the image may still be fine
            tags = {}
    if not isinstance(source, str):
        source.seek(0)
    images = MediaInfo.parse(source).image_tracks
    width = _int(images[0].width) if images else _int(tags.get("EXIF ExifImageWidth"))
    height = _int(images[0].height) if images else _int(tags.get("EXIF ExifImageLength"))
    if not images and not tags:
        raise MediaError("no image data or EXIF found; corrupt or not a photo")
    try:
        coords = get_gps_coords(tags)
    except (ArithmeticError, TypeError, ValueError):
        coords = None
    return _clean({
        "width": width, "height": height, "taken_at": _taken_at(tags),
        "camera_make": str(tags.get("Image Make", "")).strip(),
        "camera_model": str(tags.get("Image Model", "")).strip(),
        "gps": {"lat": round(coords[0], 6), "lon": round(coords[1], 6)} if coords else None,
        "format": images[0].format if images else None,
    })


def _same_file(path: str, st: os.stat_result) -> bool:
    """Whether ``path`` names the file whose fstat is ``st`` (not renamed over meanwhile)."""
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _read_facts(read: Callable[[Source], dict[str, Any]], path: str, fd: int,
                st: os.stat_result) -> dict[str, Any]:
    """``read`` the file opened as ``fd`` (fstat ``st``) at ``path``: by its name, MediaInfo's
    fastest way, when the name is UTF-8 (a name that is not, ``b'x\\xff.mp4'``, cannot reach
    libmediainfo's wide-string API intact) and still names that file afterwards; else the opened
    file itself, read through Python (``MediaInfo.parse`` of a file object), so a name swapped
    meanwhile is never probed instead. MediaInfo picks its parsers by the name's extension:
    through ``/proc/self/fd/N``, a name without one, it takes 4-5x as long here; a file object
    1-2x."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        try:
            facts = read(path)
        except RuntimeError:  # MediaInfo cannot open it: an error only if it is the same file
            if _same_file(path, st):
                raise
        else:
            if _same_file(path, st):
                return facts
    with open(fd, "rb", closefd=False) as fh:
        return read(fh)


def probe_file(path: str, kind: str) -> dict[str, Any]:
    """Facts about the file at ``path``; ``kind`` is ``av``, ``photo`` or ``other``.

    Runs in a worker process (top-level, plain data in and out). Returns the facts; ``other``
    files get ``size`` (bytes) and ``mime`` only. Raises MediaError (the message says why) for
    a file that is empty, not regular, or has no audio/video track (``av``) / no image data
    (``photo``), or that MediaInfo cannot open; OSError if the file cannot be opened (missing,
    permission denied ...).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO must not hang the worker
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MediaError("not a regular file")
        if st.st_size == 0:
            raise MediaError("empty file (0 bytes)")
        if kind == "other":
            return _clean({"size": st.st_size, "mime": mimetypes.guess_type(Path(path).name)[0]})
        try:
            facts = _read_facts(_photo_facts if kind == "photo" else _av_facts, path, fd, st)
        except RuntimeError as err:  # pymediainfo: "An error occured while opening ..."
            raise MediaError(f"MediaInfo cannot open the file ({err})") from err
    finally:
        os.close(fd)
    if kind == "av" and not facts.get("video") and not facts.get("audio"):
        raise MediaError(NO_AV)
    return {"size": st.st_size, **facts}


def probe_and_name(path: str, kind: str, name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """:func:`probe_file`, then guessit's facts about ``name`` (see :func:`handlers.files.naming.guess`)
    if the tags found have no title, else None. Runs in a worker process: one pool call. Raises
    as :func:`probe_file`."""
    from handlers.files.naming import guess

    facts = probe_file(path, kind)
    if facts.get("tags", {}).get("title"):
        return facts, None
    return facts, guess(name)


TAG_FIELDS = ("artist", "album", "album_artist", "track", "genre")
"""Tags of a music file copied into ``parsed`` (besides the title and the year)."""


def music_parsed(
    parsed: dict[str, Any], tags: dict[str, Any], guessed: dict[str, Any] | None
) -> dict[str, Any]:
    """``parsed`` of a music file once its tags are known: the title tag wins over a title from
    the name (kept as ``guessit_title``), except where a yt-dlp/Internet Archive sidecar named
    it; artist, album, album_artist, track, genre and the year of ``date`` are added. ``guessed``:
    guessit's facts about the name when parse left it to probe."""
    out = {k: v for k, v in parsed.items() if k != NAME_PENDING}
    if guessed is not None:
        out = {**guessed, **out}
    title = tags.get("title")
    if title and not out.get("source_meta"):
        if out.get("title") not in (None, title):
            out["guessit_title"] = out["title"]
        out["title"] = title
    out.update({key: tags[key] for key in TAG_FIELDS if tags.get(key)})
    year = re.match(r"(\d{4})\b", str(tags.get("date", "")))
    if year and "year" not in out:
        out["year"] = int(year.group(1))
    return out


class Probe:
    """Chain step ``probe``: fills ``job.probe`` (and, for music, ``job.parsed`` from the tags:
    :func:`music_parsed`).

    Audio/video: duration (seconds), container, bitrate (bits/s), video/audio/subtitle tracks,
    tags (title, artist, album, track ...). Photos: width/height (pixels), taken_at (ISO),
    camera_make/model, gps (decimal degrees). Other files: size and MIME type only. Raises
    PermanentError for an empty, vanished, unreadable or corrupt file; RetryableError for
    transient I/O errors (EBUSY, EAGAIN ...).
    """

    name: ClassVar[str] = "probe"

    @classmethod
    def from_context(cls, ctx: Context) -> Probe:
        """Probe needs nothing from the context."""
        return cls()

    async def handle(self, job: Job) -> Job:
        """Probe ``job.path``; the kind comes from ``job.media_type`` (or the extension)."""
        media_type = job.media_type or media_type_for(ext_of(job.path), {})
        kind = KIND.get(media_type, "other")
        name = job.parsed.get(NAME_PENDING)
        with translate({**file_errors(), MediaError: PermanentError}):
            if isinstance(name, str):
                facts, guessed = await offload.cpu(probe_and_name, job.path, kind, name)
            else:
                facts, guessed = await offload.cpu(probe_file, job.path, kind), None
        parsed = job.parsed
        if media_type == "music":
            parsed = music_parsed(parsed, facts.get("tags", {}), guessed)
        return dataclasses.replace(job, probe=facts, parsed=parsed)
