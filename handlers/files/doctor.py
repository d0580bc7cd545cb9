"""The files capability's ``harbord doctor`` checks: the bundled ffmpeg and libmediainfo."""

from __future__ import annotations

from collections.abc import Iterator

from harbord.config import Config
from harbord.doctor import Check


def _ffmpeg() -> Check:
    try:
        import imageio_ffmpeg

        return ("ffmpeg", "ok", imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError) as err:
        return ("ffmpeg", "fail", str(err))


def _mediainfo() -> Check:
    from pymediainfo import MediaInfo

    if MediaInfo.can_parse():
        return ("mediainfo", "ok", "libmediainfo loaded")
    return ("mediainfo", "fail", "libmediainfo not found (reinstall pymediainfo)")


def checks(config: Config) -> Iterator[Check]:
    """ffmpeg (the ``imageio-ffmpeg`` wheel's binary) and MediaInfo (the ``pymediainfo``
    wheel's library) are there; ``(name, level, detail)`` each."""
    yield _ffmpeg()
    yield _mediainfo()
