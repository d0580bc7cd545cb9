"""What kind of media a file is by its extension: the one table the capabilities share.

The files capability names an item's ``media_type`` from it (with what parse learnt:
:func:`handlers.files.media_kinds.media_type_for`); the search capability picks what an
embedder reads (an image or audio) for an item whose ``media_type`` says nothing.
No library imports: used in the CPU pool's workers too.

The sets are the union of the two lists the capabilities used to keep: ``bmp`` came from
search's list (files named a ``.bmp`` ``other`` before); search's own suffix lists were a subset
of the rest, and it had no video list.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

MediaKind: TypeAlias = Literal["video", "audio", "photo"]
"""The kind of media an extension stands for."""


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


VIDEO_EXTS = _words("mkv mp4 m4v avi mov wmv flv webm mpg mpeg m2ts mts ts vob ogv 3gp divx rmvb asf f4v")
AUDIO_EXTS = _words("mp3 flac m4a m4b aac ogg oga opus wav wma aiff aif ape wv mka dsf alac mpc")
PHOTO_EXTS = _words("jpg jpeg png heic heif webp tiff tif gif bmp raw dng cr2 cr3 nef arw orf rw2 raf "
                    "srw pef")
AV_EXTS = VIDEO_EXTS | AUDIO_EXTS

EXTENSION_KIND: dict[str, MediaKind] = {
    **{ext: "video" for ext in VIDEO_EXTS},
    **{ext: "audio" for ext in AUDIO_EXTS},
    **{ext: "photo" for ext in PHOTO_EXTS},
}
"""Lower-case extension (no dot) -> its kind of media."""


def ext_of(name: str) -> str:
    """The lower-case extension of a file name or path, without the dot ("" if none)."""
    base = name.rpartition("/")[2]
    dot = base.rfind(".")
    return base[dot + 1:].lower() if dot > 0 else ""


def kind_of(name: str) -> MediaKind | None:
    """The kind of media a file name or path stands for by its extension, or None."""
    return EXTENSION_KIND.get(ext_of(name))
