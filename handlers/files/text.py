"""The files capability's contribution to an item's text: what the name, the source's own
metadata sidecar (a yt-dlp ``.info.json`` or an Internet Archive ``_meta.xml``, as
``parsed["source_meta"]``) and EXIF say (see :mod:`harbord.textfacts`).

``parsed``: guessit facts (``title``, ``year``, ``season``, ``episode``, ``episode_title``,
``tags``) and ``source_meta`` — yt-dlp: ``title``, ``description``, ``uploader``/``channel``,
``tags``, ``categories``, ``upload_date`` (YYYYMMDD); Internet Archive: ``title``,
``description``, ``creator``, ``subject``, ``date``; values may be strings or lists.
``probe``: EXIF facts of photos (``exif`` with ``DateTimeOriginal``, or ``taken_at``/
``date_taken``; ``place``/``location``/``gps``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harbord.textfacts import TextFacts, first, mapping, names


def facts(item: Mapping[str, Any]) -> TextFacts:
    """The text facts of catalog row ``item`` known from its files (see the module docstring)."""
    parsed, probe = mapping(item.get("parsed")), mapping(item.get("probe"))
    meta, exif = mapping(parsed.get("source_meta")), mapping(probe.get("exif"))
    files = item.get("files") or []
    fallback = str(files[-1]["path"]).rsplit("/", 1)[-1] if files else None
    out: TextFacts = {
        "title": parsed.get("title") or meta.get("title") or fallback,
        "year": parsed.get("year"),
        "season": parsed.get("season"),
        "episode": parsed.get("episode"),
        "episode_title": parsed.get("episode_title"),
        "description": meta.get("description"),
        "genres": names(meta.get("categories") or meta.get("genre")),
        "creator": names(meta.get("creator") or meta.get("uploader") or meta.get("channel")
                         or meta.get("artist"), limit=3),
    }
    tags = names(meta.get("tags") or meta.get("subject"))
    out["tags"] = tags + [t for t in names(parsed.get("tags")) if t not in tags]
    taken = first([exif, probe], "DateTimeOriginal", "taken_at", "date_taken", "datetime_original")
    if taken is None and item.get("media_type") != "photo":
        taken = meta.get("upload_date") or meta.get("date")
    out["date"] = taken
    place = first([probe, exif], "place", "location", "city", "gps_place")
    gps = probe.get("gps")
    if place is None and isinstance(gps, Mapping):
        lat, lon = gps.get("lat", gps.get("latitude")), gps.get("lon", gps.get("longitude"))
        if lat is not None and lon is not None:
            place = f"{float(lat):.3f}, {float(lon):.3f}"
    out["place"] = place
    return out
