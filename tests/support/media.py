"""Real media files for tests and benchmarks, made with the ffmpeg binary of ``imageio-ffmpeg``.

Every maker takes ``seed``: with ``seed=None`` (the default) each call picks a fresh seed, so two
calls never produce identical bytes; the same explicit seed gives byte-identical output (ffmpeg
runs with ``bitexact`` flags and single-threaded encoders). The seed changes a sine frequency or
pattern colour *and* is written into the file's metadata, so distinct seeds always mean distinct
bytes. Each maker returns the path it wrote and takes well under a second for the defaults.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import subprocess
import tempfile
from pathlib import Path

import imageio_ffmpeg
import piexif
from PIL import Image

_SEEDS = itertools.count(random.SystemRandom().randrange(1, 1 << 30))
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]


def _seed(seed: int | None) -> int:
    return next(_SEEDS) if seed is None else seed


def ffmpeg(*args: str) -> None:
    """Run the bundled ffmpeg with ``args``; raises RuntimeError with ffmpeg's stderr on failure."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {proc.stderr.strip()}")


def _video_in(seconds: float, size: str, seed: int) -> list[str]:
    # testsrc2 is deterministic; the seed shifts the hue so frames differ between seeds.
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds},hue=h={seed % 360}"]


def _audio_in(seconds: float, seed: int, rate: int = 48000) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency={220 + seed % 1500}:sample_rate={rate}:duration={seconds}"]


def make_mp4(path: Path, seconds: float = 1.0, size: str = "320x240", seed: int | None = None) -> Path:
    """Write an MP4 (H.264 video ``size`` at 25 fps + AAC stereo 48 kHz) lasting ``seconds``.

    The moov atom is at the end (ffmpeg's default), so :func:`truncate` makes it unplayable.
    """
    s = _seed(seed)
    ffmpeg(
        *_video_in(seconds, size, s), *_audio_in(seconds, s),
        "-c:v", "libx264", "-preset", "ultrafast", "-threads", "1", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-ac", "2", "-shortest", "-metadata", f"comment=seed {s}", *BITEXACT, str(path),
    )
    return path


def make_mkv(
    path: Path, seconds: float = 1.0, size: str = "320x240", subtitles: bool = True,
    audio: str = "vorbis", seed: int | None = None,
) -> Path:
    """Write a Matroska file: H.264 video, ``audio`` ("vorbis" or "aac") audio and, with
    ``subtitles``, one SubRip subtitle stream tagged language ``eng``."""
    s = _seed(seed)
    codec = {"vorbis": "libvorbis", "aac": "aac"}[audio]
    with tempfile.TemporaryDirectory() as tmp:
        inputs = [*_video_in(seconds, size, s), *_audio_in(seconds, s)]
        maps = ["-map", "0:v", "-map", "1:a"]
        if subtitles:
            srt = Path(tmp) / "sub.srt"
            srt.write_text(f"1\n00:00:00,000 --> 00:00:00,500\nseed {s}\n\n", encoding="utf-8")
            inputs += ["-i", str(srt)]
            maps += ["-map", "2:s", "-c:s", "srt", "-metadata:s:s:0", "language=eng"]
        ffmpeg(
            *inputs, *maps,
            "-c:v", "libx264", "-preset", "ultrafast", "-threads", "1", "-pix_fmt", "yuv420p",
            "-c:a", codec, "-ac", "2", "-metadata:s:a:0", "language=eng",
            "-metadata", f"comment=seed {s}", *BITEXACT, str(path),
        )
    return path


def make_mp3(
    path: Path, seconds: float = 1.0, title: str | None = None, artist: str | None = None,
    album: str | None = None, seed: int | None = None,
) -> Path:
    """Write an MP3 (LAME, 44.1 kHz mono sine) with ID3v2 tags for the given title/artist/album."""
    s = _seed(seed)
    meta = ["-metadata", f"comment=seed {s}"]
    for key, value in (("title", title), ("artist", artist), ("album", album)):
        if value is not None:
            meta += ["-metadata", f"{key}={value}"]
    ffmpeg(*_audio_in(seconds, s, 44100), "-c:a", "libmp3lame", "-b:a", "128k", *meta, *BITEXACT, str(path))
    return path


def make_flac(path: Path, seconds: float = 1.0, seed: int | None = None) -> Path:
    """Write a FLAC file (48 kHz mono sine) tagged with its seed."""
    s = _seed(seed)
    ffmpeg(*_audio_in(seconds, s), "-c:a", "flac", "-metadata", f"comment=seed {s}", *BITEXACT, str(path))
    return path


def _rational(value: float, denominator: int = 10000) -> tuple[int, int]:
    return round(value * denominator), denominator


def _dms(degrees: float) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    degrees = abs(degrees)
    whole = math.floor(degrees)
    minutes_f = (degrees - whole) * 60
    minutes = math.floor(minutes_f)
    seconds = (minutes_f - minutes) * 60
    return (whole, 1), (minutes, 1), _rational(seconds, 1000)


def make_jpg_exif(
    path: Path, taken: str | None = "2023:07:14 10:11:12", make: str | None = "Canon",
    model: str | None = "EOS R6", gps: tuple[float, float] | None = (52.52, 13.405),
    size: tuple[int, int] = (64, 48), seed: int | None = None,
) -> Path:
    """Write a JPEG of ``size`` pixels (width, height) with EXIF DateTimeOriginal ``taken``
    ("YYYY:MM:DD HH:MM:SS"), Make/Model and GPS (lat, lon in decimal degrees), via Pillow + piexif.
    ``None`` leaves a tag out."""
    s = _seed(seed)
    image = Image.new("RGB", size, ((s * 37) % 256, (s * 91) % 256, (s * 13) % 256))
    zeroth: dict[int, object] = {piexif.ImageIFD.ImageDescription: f"seed {s}".encode()}
    if make is not None:
        zeroth[piexif.ImageIFD.Make] = make.encode()
    if model is not None:
        zeroth[piexif.ImageIFD.Model] = model.encode()
    exif: dict[int, object] = {}
    if taken is not None:
        exif[piexif.ExifIFD.DateTimeOriginal] = taken.encode()
        exif[piexif.ExifIFD.DateTimeDigitized] = taken.encode()
    gps_ifd: dict[int, object] = {}
    if gps is not None:
        lat, lon = gps
        gps_ifd = {
            piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
            piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
            piexif.GPSIFD.GPSLatitude: _dms(lat),
            piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
            piexif.GPSIFD.GPSLongitude: _dms(lon),
        }
    blob = piexif.dump({"0th": zeroth, "Exif": exif, "GPS": gps_ifd, "1st": {}, "thumbnail": None})
    image.save(path, "JPEG", exif=blob, quality=90)
    return path


def make_large_raw_mkv(path: Path, size_bytes: int, seed: int | None = None) -> Path:
    """Write a Matroska file of uncompressed gray 1280x720 frames (921,600 bytes each) that is at
    least ``size_bytes`` bytes and at most one frame plus container overhead larger.

    Rawvideo is I/O-bound to make (about disk speed), so it suits hashing/copy benchmarks.
    """
    s = _seed(seed)
    frame = 1280 * 720
    frames = max(1, math.ceil(size_bytes / frame))
    ffmpeg(
        "-f", "lavfi", "-i", f"color=c=0x{(s * 2654435761) % 0xFFFFFF:06x}:size=1280x720:rate=25",
        "-frames:v", str(frames), "-c:v", "rawvideo", "-pix_fmt", "gray",
        "-metadata", f"comment=seed {s}", *BITEXACT, str(path),
    )
    return path


def truncate(path: Path, keep_bytes: int) -> Path:
    """Cut ``path`` down to its first ``keep_bytes`` bytes (a download that stopped early)."""
    os.truncate(path, keep_bytes)
    return path
