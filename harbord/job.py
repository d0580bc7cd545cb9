"""Job: the immutable record that flows through the handler chain.

A handler returns ``dataclasses.replace(job, ...)``; the job table stores ``job.to_json()``
after every stage so a restart resumes with what earlier stages learnt.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, get_args

WatchKind: TypeAlias = Literal["inbox", "internet_archive", "youtube", "photos"]
"""A watched folder's kind (``[[watch]] kind``)."""
JobSource: TypeAlias = Literal[WatchKind, "cli", "rebuild"]
"""Where a job came from: a watched folder's kind, ``harbord ingest`` or ``rebuild-catalog``."""
Action: TypeAlias = Literal["move", "copy", "link", "keep"]
"""What store does with the dropped file (``[[watch]] action``, ``ingest --action``)."""
MediaType: TypeAlias = Literal["movie", "episode", "music", "video", "photo", "other"]
"""An item's kind of media, as the files capability names it."""

MEDIA_TYPES: tuple[MediaType, ...] = get_args(MediaType)


@dataclass(frozen=True)
class Job:
    """One file's progress through the chain.

    Fields filled by the core: ``id`` (stable job id, 32 hex chars), ``path`` (absolute path
    of the dropped file), ``source`` (:data:`JobSource`: a watch kind, cli or rebuild),
    ``watch_root`` (the watched folder it came from, or None), ``size`` (bytes) and ``mtime``
    (seconds since the epoch) at settle time, ``action`` (move|copy|link|keep).

    Fields filled by handlers: ``sidecars`` (kind -> path), ``parsed`` (guessit facts),
    ``media_type`` (one of MEDIA_TYPES), ``probe`` (pymediainfo/EXIF facts), ``file_hash``
    (BLAKE3 hex, 64 chars), ``file_id`` (``[st_dev, st_ino]`` of the file checksum hashed, so
store makes the object from that file and no other), ``object_path`` (path of the content-addressed object),
    ``item_id`` (catalog row), ``vectors`` (embedding space -> vector id), ``enrichment``,
    ``series``.
    """

    id: str
    path: str
    source: JobSource = "inbox"
    watch_root: str | None = None
    size: int = 0
    mtime: float = 0.0
    action: Action = "move"
    sidecars: dict[str, str] = field(default_factory=dict)
    parsed: dict[str, Any] = field(default_factory=dict)
    media_type: MediaType | None = None
    probe: dict[str, Any] = field(default_factory=dict)
    file_hash: str | None = None
    file_id: list[int] | None = None
    object_path: str | None = None
    item_id: int | None = None
    vectors: dict[str, int] = field(default_factory=dict)
    enrichment: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialise to a JSON object string (every field, keys sorted).

        Reads the fields directly instead of ``dataclasses.asdict``, which deep-copies every
        nested dict and list first: same text, about 6x faster for a probed job here, and the
        job table stores it after every stage.
        """
        return _ENCODER.encode({name: getattr(self, name) for name in _FIELDS})

    @classmethod
    def from_json(cls, text: str) -> Job:
        """Inverse of :meth:`to_json`; unknown keys (from a newer version) are ignored."""
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in _FIELD_SET})


_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
_FIELD_SET = frozenset(_FIELDS)
_ENCODER = json.JSONEncoder(sort_keys=True, default=str)
