"""What a capability contributes to an item's text (``Capability.text``), and helpers to read it.

A contribution is a function ``(item) -> TextFacts``: ``item`` is the catalog row as
:meth:`harbord.catalog.Catalog.get_item` returns it (JSON columns decoded); it reads the columns
its capability fills and returns the facts it knows. The search capability composes the
embedded text from every contribution (:mod:`handlers.search.item_text`): capabilities later in
``handlers.BUILTIN`` refine earlier ones, so for a single fact the latest contribution that has
it wins, and ``tags`` of all contributions are joined (latest first). The catalog's own
``title``, ``year`` and ``media_type`` (a person may have edited them) win over all.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

MAX_FIELD_CHARS = 1200
"""Longest description kept per field (characters); the model would cut it anyway."""

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
EMPTY: tuple[Any, ...] = (None, "", [], {}, "N/A")
"""Values that mean "not known" (OMDb writes ``"N/A"``)."""


class TextFacts(TypedDict, total=False):
    """Facts about one item for its embedding text; every key optional.

    ``title``, ``year``, ``show`` (the series an episode is of), ``season``, ``episode`` (int,
    or a list for a multi-episode file), ``episode_title``, ``description``, ``tagline``,
    ``date`` (any date text: ``YYYYMMDD``, EXIF ``YYYY:MM:DD HH:MM:SS`` or ISO), ``place``: raw
    values, cleaned when composed. ``genres``, ``cast``, ``director``, ``creator``, ``tags``:
    lists of names (:func:`names`).
    """

    title: Any
    year: Any
    show: Any
    season: Any
    episode: Any
    episode_title: Any
    description: Any
    tagline: Any
    date: Any
    place: Any
    genres: list[str]
    cast: list[str]
    director: list[str]
    creator: list[str]
    tags: list[str]


def clean(value: Any, limit: int = MAX_FIELD_CHARS) -> str:
    """``value`` as one line of plain text: HTML tags dropped, entities decoded, whitespace
    collapsed, cut at ``limit`` characters; lists joined with ``"; "``; None -> ``""``."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "; ".join(filter(None, (clean(v, limit) for v in value)))[:limit]
    text = html.unescape(_TAG.sub(" ", str(value)))
    return _SPACE.sub(" ", text).strip()[:limit]


def names(value: Any, limit: int = 12) -> list[str]:
    """Names from a list of strings or ``{"name"}``/``{"title"}`` dicts, or a comma-separated
    string; cleaned, without ``N/A`` and repeats, at most ``limit``."""
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
        text = clean(name, 100)
        if text and text.upper() != "N/A" and text not in out:
            out.append(text)
        if len(out) >= limit:
            break
    return out


def first(sources: Iterable[Mapping[str, Any]], *keys: str) -> Any:
    """The first known value (not in :data:`EMPTY`) of ``keys`` in ``sources``, in order; None."""
    for source in sources:
        for key in keys:
            value = source.get(key)
            if value not in EMPTY:
                return value
    return None


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else ``{}`` (a JSON column may hold anything)."""
    return value if isinstance(value, Mapping) else {}
