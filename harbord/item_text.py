"""The text that is embedded for an item, built from everything known about it.

Order matters: MiniLM reads at most 256 word pieces, so the identifying facts come first
(title, year, kind, series/season/episode), then the description (overview, plot, yt-dlp or
Internet Archive description), then genres, cast, tags, and photo facts (EXIF date, place).

Inputs are the JSON columns handlers fill (see :class:`harbord.job.Job`):

- ``parsed``: guessit facts (``title``, ``year``, ``season``, ``episode``, ``episode_title``)
  and ``source_meta``, the source's own metadata: a yt-dlp ``.info.json`` (``title``,
  ``description``, ``uploader``/``channel``, ``tags``, ``categories``, ``upload_date``
  YYYYMMDD) or an Internet Archive ``_meta.xml`` (``title``, ``description``, ``creator``,
  ``subject``, ``date``, ``collection``); values may be strings or lists.
- ``probe``: EXIF facts of photos (``exif`` dict with ``DateTimeOriginal``, or
  ``taken_at``/``date_taken``; ``place``/``location``/``gps``).
- ``enrichment``: provider fields (TMDb ``overview``, ``tagline``, ``genres`` as names or
  ``{"name"}`` dicts, ``cast`` as names or ``{"name", "character"}`` dicts, ``keywords``; OMDb
  ``Plot``, ``Genre``, ``Actors`` comma-separated strings); a provider may nest its fields
  under its own key (``{"tmdb": {...}, "omdb": {...}}``), which is searched too.
- ``series``: ``title``/``name`` of the show, ``season``, ``episode``, ``episode_title``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from typing import Any

from harbord.job import Job

MAX_FIELD_CHARS = 1200
"""Longest description kept per field (characters); the model would cut it anyway."""

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def _clean(value: Any, limit: int = MAX_FIELD_CHARS) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "; ".join(filter(None, (_clean(v, limit) for v in value)))[:limit]
    text = html.unescape(_TAG.sub(" ", str(value)))
    return _SPACE.sub(" ", text).strip()[:limit]


def _names(value: Any, limit: int = 12) -> list[str]:
    """Names from a list of strings/dicts, or a comma-separated string."""
    if value is None or value == "":
        return []
    items: Iterable[Any]
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, Mapping):
        items = [value]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        items = [value]
    out: list[str] = []
    for item in items:
        name = item.get("name") or item.get("title") if isinstance(item, Mapping) else item
        text = _clean(name, 100)
        if text and text.upper() != "N/A" and text not in out:
            out.append(text)
        if len(out) >= limit:
            break
    return out


def _first(sources: Iterable[Mapping[str, Any]], *keys: str) -> Any:
    for source in sources:
        for key in keys:
            value = source.get(key)
            if value not in (None, "", [], {}, "N/A"):
                return value
    return None


def _layers(enrichment: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The enrichment dict and its per-provider sub-dicts, top level first."""
    layers: list[Mapping[str, Any]] = [enrichment]
    layers += [v for v in enrichment.values() if isinstance(v, Mapping)]
    return layers


def _date(value: Any) -> str:
    text = _clean(value, 40)
    if re.fullmatch(r"\d{8}", text):  # yt-dlp upload_date
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    if re.match(r"\d{4}:\d{2}:\d{2}", text):  # EXIF "YYYY:MM:DD HH:MM:SS"
        return text[:10].replace(":", "-") + text[10:]
    return text


def _episode_label(season: Any, episode: Any) -> str:
    def num(v: Any) -> str:
        if isinstance(v, list):
            return "-".join(str(x) for x in v)
        return str(v)

    parts = []
    if season not in (None, ""):
        parts.append(f"season {num(season)}")
    if episode not in (None, ""):
        parts.append(f"episode {num(episode)}")
    return " ".join(parts)


def build_item_text(
    *,
    title: str | None = None,
    year: int | None = None,
    media_type: str | None = None,
    parsed: Mapping[str, Any] | None = None,
    probe: Mapping[str, Any] | None = None,
    enrichment: Mapping[str, Any] | None = None,
    series: Mapping[str, Any] | None = None,
    fallback: str | None = None,
) -> str:
    """Compose the text to embed for one item (see the module docstring for the inputs).

    ``title``/``year`` win over ``parsed`` (the catalog columns may be user-edited);
    ``fallback`` (a file name) is used when nothing else names the item. Returns a single
    line of sentences; never raises on odd shapes (unknown types are stringified).
    """
    parsed = parsed or {}
    probe = probe or {}
    enrichment = enrichment or {}
    series = series or {}
    meta = parsed.get("source_meta") if isinstance(parsed.get("source_meta"), Mapping) else {}
    assert isinstance(meta, Mapping)
    layers = _layers(enrichment)
    exif = probe.get("exif") if isinstance(probe.get("exif"), Mapping) else {}
    assert isinstance(exif, Mapping)

    name = _clean(title or _first(layers, "title", "name", "Title") or parsed.get("title")
                  or meta.get("title") or fallback, 300)
    year_value = year or parsed.get("year") or _first(layers, "year", "Year")
    sentences: list[str] = []
    head = name
    if year_value and str(year_value) not in name:
        head = f"{name} ({_clean(year_value, 12)})" if name else _clean(year_value, 12)
    if head:
        sentences.append(head)

    show = _clean(series.get("title") or series.get("name"), 200)
    season = series.get("season", parsed.get("season"))
    episode = series.get("episode", parsed.get("episode"))
    episode_title = _clean(series.get("episode_title") or parsed.get("episode_title"), 200)
    kind = {"movie": "Movie", "episode": "TV episode", "music": "Music", "video": "Video",
            "photo": "Photo"}.get(media_type or "", "")
    if media_type == "episode" or show or episode_title:
        label = _episode_label(season, episode)
        bits = [b for b in [f"of {show}" if show and show != name else "", label,
                            f'"{episode_title}"' if episode_title else ""] if b]
        sentences.append(" ".join(["TV episode", *bits]).strip())
    elif kind:
        sentences.append(kind)

    description = _first(layers, "overview", "plot", "Plot", "description", "summary")
    if description is None:
        description = meta.get("description")
    tagline = _first(layers, "tagline")
    for text in (tagline, description):
        cleaned = _clean(text)
        if cleaned:
            sentences.append(cleaned)

    genres = _names(_first(layers, "genres", "Genre", "genre")) or _names(
        meta.get("categories") or meta.get("genre"))
    if genres:
        sentences.append("Genres: " + ", ".join(genres))
    cast = _names(_first(layers, "cast", "Actors", "actors", "artists"), limit=8)
    director = _names(_first(layers, "director", "Director", "directors"), limit=3)
    if director:
        sentences.append("Directed by " + ", ".join(director))
    if cast:
        sentences.append("Cast: " + ", ".join(cast))
    creator = _names(meta.get("creator") or meta.get("uploader") or meta.get("channel")
                     or meta.get("artist"), limit=3)
    if creator:
        sentences.append("By " + ", ".join(creator))
    tags = _names(_first(layers, "keywords", "tags")) + _names(meta.get("tags") or meta.get("subject"))
    tags += [t for t in _names(parsed.get("tags")) if t not in tags]
    if tags:
        sentences.append("Tags: " + ", ".join(dict.fromkeys(tags)))

    taken = _first([exif, probe], "DateTimeOriginal", "taken_at", "date_taken", "datetime_original")
    if taken is None and media_type != "photo":
        taken = meta.get("upload_date") or meta.get("date")
    if taken:
        sentences.append(("Taken " if media_type == "photo" else "Date ") + _date(taken))
    place = _first([probe, exif], "place", "location", "city", "gps_place")
    if place is None and isinstance(probe.get("gps"), Mapping):
        gps = probe["gps"]
        lat, lon = gps.get("lat", gps.get("latitude")), gps.get("lon", gps.get("longitude"))
        if lat is not None and lon is not None:
            place = f"{float(lat):.3f}, {float(lon):.3f}"
    if place:
        sentences.append(f"Place: {_clean(place, 200)}")

    return ". ".join(s.rstrip(". ") for s in sentences if s) + ("." if sentences else "")


def item_text(item: Mapping[str, Any]) -> str:
    """Text of a catalog item as returned by :meth:`harbord.catalog.Catalog.get_item`."""
    files = item.get("files") or []
    fallback = str(files[-1]["path"]).rsplit("/", 1)[-1] if files else None
    return build_item_text(
        title=item.get("title"),
        year=item.get("year"),
        media_type=item.get("media_type"),
        parsed=item.get("parsed") or {},
        probe=item.get("probe") or {},
        enrichment=item.get("enrichment") or {},
        series=item.get("series") or {},
        fallback=fallback,
    )


def job_text(job: Job) -> str:
    """Text of a job (before or without a catalog row)."""
    return build_item_text(
        title=job.parsed.get("title"),
        year=job.parsed.get("year"),
        media_type=job.media_type,
        parsed=job.parsed,
        probe=job.probe,
        enrichment=job.enrichment,
        series=job.series,
        fallback=job.path.rsplit("/", 1)[-1],
    )
