"""The text that is embedded for an item, composed from every capability's contributions.

Each capability may contribute :class:`harbord.textfacts.TextFacts` for an item
(``Capability.text``): the files capability what the name, source metadata and EXIF say,
enrichment the providers' fields, series the show/season/episode. :func:`compose` merges them
(later capabilities refine earlier ones; the catalog's own title, year and type win) and writes
the sentences.

Order matters: MiniLM reads at most 256 word pieces, so the identifying facts come first
(title, year, kind, series/season/episode), then the description (tagline, overview or plot),
then genres, director, cast, creator, tags, and the date and place.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

from harbord.capability import contributions
from harbord.textfacts import EMPTY, TextFacts, clean

Contribution = Callable[[Mapping[str, Any]], TextFacts]

LISTS_JOINED = ("tags",)
"""Facts whose values from all contributions are joined (latest first); any other fact takes
the latest contribution's known value."""


@cache
def _contributions() -> tuple[Contribution, ...]:
    return tuple(contributions("text"))


def merge(parts: Sequence[TextFacts]) -> TextFacts:
    """Merge contributions given in registry order: later ones refine earlier ones."""
    merged: dict[str, Any] = {}
    for part in reversed(parts):
        for key, value in part.items():
            if key in LISTS_JOINED:
                merged[key] = [*merged.get(key, []), *(v for v in value if v not in merged.get(key, []))]
            elif value not in EMPTY and merged.get(key) in EMPTY:
                merged[key] = value
    return merged  # type: ignore[return-value]


def _date(value: Any) -> str:
    text = clean(value, 40)
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


def compose(item: Mapping[str, Any], parts: Sequence[Contribution] | None = None) -> str:
    """The text to embed for catalog row ``item`` (as :meth:`harbord.catalog.Catalog.get_item`
    returns it) from the contributions ``parts`` (default: every capability's). Returns a
    single line of sentences; never raises on odd shapes (unknown types are stringified)."""
    facts = merge([part(item) for part in (_contributions() if parts is None else parts)])
    media_type = item.get("media_type")
    name = clean(item.get("title") or facts.get("title"), 300)
    year_value = item.get("year") or facts.get("year")
    sentences: list[str] = []
    head = name
    if year_value and str(year_value) not in name:
        head = f"{name} ({clean(year_value, 12)})" if name else clean(year_value, 12)
    if head:
        sentences.append(head)

    show = clean(facts.get("show"), 200)
    episode_title = clean(facts.get("episode_title"), 200)
    kind = {"movie": "Movie", "episode": "TV episode", "music": "Music", "video": "Video",
            "photo": "Photo"}.get(media_type or "", "")
    if media_type == "episode" or show or episode_title:
        label = _episode_label(facts.get("season"), facts.get("episode"))
        bits = [b for b in [f"of {show}" if show and show != name else "", label,
                            f'"{episode_title}"' if episode_title else ""] if b]
        sentences.append(" ".join(["TV episode", *bits]).strip())
    elif kind:
        sentences.append(kind)

    for text in (facts.get("tagline"), facts.get("description")):
        cleaned = clean(text)
        if cleaned:
            sentences.append(cleaned)
    for key, lead in (("genres", "Genres: "), ("director", "Directed by "), ("cast", "Cast: "),
                      ("creator", "By "), ("tags", "Tags: ")):
        values: list[str] = facts.get(key) or []  # type: ignore[assignment]
        if values:
            sentences.append(lead + ", ".join(dict.fromkeys(values)))
    taken = facts.get("date")
    if taken not in EMPTY:
        sentences.append(("Taken " if media_type == "photo" else "Date ") + _date(taken))
    place = facts.get("place")
    if place not in EMPTY:
        sentences.append(f"Place: {clean(place, 200)}")
    return ". ".join(s.rstrip(". ") for s in sentences if s) + ("." if sentences else "")


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
    """:func:`compose` for an item given by its columns; ``fallback`` (a file name) names the
    item when nothing else does."""
    return compose({"title": title, "year": year, "media_type": media_type, "parsed": parsed or {},
                    "probe": probe or {}, "enrichment": enrichment or {}, "series": series or {},
                    "files": [{"path": fallback}] if fallback else []})


def item_text(item: Mapping[str, Any]) -> str:
    """Text of a catalog item as returned by :meth:`harbord.catalog.Catalog.get_item`."""
    return compose(item)
