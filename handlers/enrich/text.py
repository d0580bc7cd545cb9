"""The enrich capability's contribution to an item's text: the ``items.enrichment`` column
(see :mod:`harbord.textfacts`).

Provider fields as the providers name them: TMDb (https://developer.themoviedb.org/reference)
``overview``, ``tagline``, ``genres`` (``{"name"}`` dicts), ``cast`` (``{"name", "character"}``
dicts), ``keywords``; OMDb (https://www.omdbapi.com/) ``Title``, ``Year``, ``Plot``, ``Genre``,
``Director``, ``Actors`` as comma-separated strings. A provider may nest its fields under its
own key (``{"tmdb": {...}, "omdb": {...}}``); the top level is read first, then each nested one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harbord.textfacts import TextFacts, first, mapping, names


def facts(item: Mapping[str, Any]) -> TextFacts:
    """The text facts of catalog row ``item`` known from its enrichment."""
    enrichment = mapping(item.get("enrichment"))
    layers: list[Mapping[str, Any]] = [enrichment]
    layers += [v for v in enrichment.values() if isinstance(v, Mapping)]
    return {
        "title": first(layers, "title", "name", "Title"),
        "year": first(layers, "year", "Year"),
        "description": first(layers, "overview", "plot", "Plot", "description", "summary"),
        "tagline": first(layers, "tagline"),
        "genres": names(first(layers, "genres", "Genre", "genre")),
        "cast": names(first(layers, "cast", "Actors", "actors", "artists"), limit=8),
        "director": names(first(layers, "director", "Director", "directors"), limit=3),
        "tags": names(first(layers, "keywords", "tags")),
    }
