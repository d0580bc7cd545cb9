"""What kind of media a file is, from its extension (and, for video, what parse learnt).

Used by parse (media_type), probe (audio/video or photo facts) and rebuild-catalog. The
extension sets are the core's (:mod:`harbord.mediatypes`), shared with the search capability.
"""

from __future__ import annotations

from typing import Any

from harbord.job import MediaType
from harbord.mediatypes import AUDIO_EXTS, PHOTO_EXTS, VIDEO_EXTS


def media_type_for(ext: str, facts: dict[str, Any], *, from_ytdlp: bool = False,
                   source: str = "") -> MediaType:
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
