"""The series capability's contribution to an item's text: the ``items.series`` column
(``title``/``name`` of the show, ``season``, ``episode``, ``episode_title``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harbord.textfacts import TextFacts, mapping


def facts(item: Mapping[str, Any]) -> TextFacts:
    """The text facts of catalog row ``item`` known from its series grouping."""
    series = mapping(item.get("series"))
    return {
        "show": series.get("title") or series.get("name"),
        "season": series.get("season"),
        "episode": series.get("episode"),
        "episode_title": series.get("episode_title"),
    }
