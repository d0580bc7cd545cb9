"""What kind of media a file is, from its extension (and, for video, what parse learnt).

Used by parse (media_type), probe (audio/video or photo facts) and store (object extension).
"""

from __future__ import annotations

from typing import Any


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


VIDEO_EXTS = _words("mkv mp4 m4v avi mov wmv flv webm mpg mpeg m2ts mts ts vob ogv 3gp divx rmvb asf f4v")
AUDIO_EXTS = _words("mp3 flac m4a m4b aac ogg oga opus wav wma aiff aif ape wv mka dsf alac mpc")
PHOTO_EXTS = _words("jpg jpeg png heic heif webp tiff tif gif raw dng cr2 cr3 nef arw orf rw2 raf srw pef")
AV_EXTS = VIDEO_EXTS | AUDIO_EXTS


def ext_of(name: str) -> str:
    """The lower-case extension of a file name or path, without the dot ("" if none)."""
    base = name.rpartition("/")[2]
    dot = base.rfind(".")
    return base[dot + 1:].lower() if dot > 0 else ""


def media_type_for(ext: str, facts: dict[str, Any], *, from_ytdlp: bool = False, source: str = "") -> str:
    """movie|episode|music|video|photo|other: audio/photo by extension; for video extensions a
    yt-dlp download or the photos watch kind is ``video``, then guessit's type decides (episode,
    movie when it found a title, else video); anything else is ``other``."""
    if ext in AUDIO_EXTS:
        return "music"
    if ext in PHOTO_EXTS:
        return "photo"
    if ext not in VIDEO_EXTS:
        return "other"
    if from_ytdlp or source == "photos":
        return "video"
    if facts.get("type") == "episode":
        return "episode"
    return "movie" if facts.get("type") == "movie" and facts.get("title") else "video"
