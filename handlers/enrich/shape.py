"""The stored enrichment of an item (``items.enrichment``, ``harbord show --json``'s
``enrichment``), composed from the providers' answers.

Shape (README, "``--json`` shapes")::

    {"status": "done|pending|needs_review|none", "source", "confidence", "tmdb_id", "imdb_id",
     "kind", "title", "original_title", "year", "overview", "tagline", "runtime_min", "genres",
     "languages", "countries",
     "cast": [{"name", "character"}], "directors", "writers",
     "ratings": {"imdb", "imdb_votes", "tmdb", "tmdb_votes", "rotten_tomatoes", "metacritic"},
     "content_rating", "soundtrack": {"source", "release_group_id", "tracks": [{"title",
     "artists", "length_seconds"}]}, "artwork": {"poster", "backdrop"}, "candidates": [...],
     "locked": [...], "why": "...", "series": {...} (episodes: "tmdb_id", "name"),
     "episode": {...} (episodes: "season", "episode", "title", "air_date", "overview")}

TMDb fields as documented at https://developer.themoviedb.org/reference/movie-details (movie),
``/tv/{id}`` and ``/tv/{id}/season/{s}/episode/{e}``; ``credits`` appended or fetched
(``cast[].name/character``, ``crew[].job`` = Director, Screenplay/Writer); ``external_ids`` or
``imdb_id``. OMDb's ratings parsed by :func:`handlers.enrich.providers.omdb.ratings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from handlers.enrich.match import Decision

TOP_CAST = 15
WRITER_JOBS = frozenset({"Screenplay", "Writer", "Story", "Novel", "Author", "Teleplay"})
STATE_KEYS = frozenset({"status", "candidates", "why", "warnings", "locked"})
"""Keys that describe the enrichment itself, never locked."""


def year_of(date: Any) -> int | None:
    """The year of a ``YYYY-MM-DD`` date (TMDb), or None."""
    if isinstance(date, str) and len(date) >= 4 and date[:4].isdigit():
        return int(date[:4])
    return None


def imdb_id_of(details: Mapping[str, Any]) -> str | None:
    """The IMDb id of a TMDb details body (``imdb_id``, or ``external_ids.imdb_id``)."""
    value = details.get("imdb_id") or (details.get("external_ids") or {}).get("imdb_id")
    return str(value) if isinstance(value, str) and value.startswith("tt") else None


def _names(values: Any) -> list[str]:
    out: list[str] = []
    for value in values or []:
        name = value.get("name") if isinstance(value, Mapping) else value
        if isinstance(name, str) and name and name not in out:
            out.append(name)
    return out


def _credits(details: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    credits: Mapping[str, Any] = (details["credits"] if isinstance(details.get("credits"), Mapping)
                                  else details)
    cast = [{"name": c.get("name"), "character": c.get("character")}
            for c in (credits.get("cast") or [])[:TOP_CAST] if isinstance(c, Mapping) and c.get("name")]
    crew = [c for c in credits.get("crew") or [] if isinstance(c, Mapping)]
    directors = _names(c for c in crew if c.get("job") == "Director")
    writers = _names(c for c in crew if c.get("job") in WRITER_JOBS)
    if not directors and details.get("created_by"):  # TV: the creators
        directors = _names(details.get("created_by"))
    return cast, directors, writers


def compose(*, kind: str, details: Mapping[str, Any], episode: Mapping[str, Any] | None,
            omdb: Mapping[str, Any] | None, soundtrack: Mapping[str, Any] | None,
            artwork: Mapping[str, str], decision: Decision, why: str) -> dict[str, Any]:
    """The enrichment shape (module docstring) of an applied match."""
    from handlers.enrich.providers.omdb import ratings as omdb_ratings

    movie = kind == "movie"
    cast, directors, writers = _credits(details)
    if episode:
        more_cast, more_directors, more_writers = _credits(episode)
        cast = cast or more_cast
        directors = more_directors or directors
        writers = more_writers or writers
    runtime = details.get("runtime") if movie else (details.get("episode_run_time") or [None])[0]
    rated = omdb_ratings(omdb) if omdb else {}
    best = decision.best
    out: dict[str, Any] = {
        "source": "tmdb+omdb" if omdb else "tmdb",
        "confidence": round(1.0 - best.distance, 3) if best is not None else None,
        "tmdb_id": int(details["id"]),
        "imdb_id": imdb_id_of(details),
        "kind": kind,
        "title": details.get("title") if movie else details.get("name"),
        "original_title": details.get("original_title") if movie else details.get("original_name"),
        "year": year_of(details.get("release_date") if movie else details.get("first_air_date")),
        "overview": (episode or {}).get("overview") or details.get("overview") or None,
        "tagline": details.get("tagline") or None,
        "runtime_min": runtime if isinstance(runtime, int) else None,
        "genres": _names(details.get("genres")),
        "languages": [lang.get("english_name") or lang.get("name") or lang.get("iso_639_1")
                      for lang in details.get("spoken_languages") or [] if isinstance(lang, Mapping)],
        "countries": _names(details.get("production_countries")) or list(details.get("origin_country") or []),
        "cast": cast,
        "directors": directors,
        "writers": writers,
        "ratings": {
            "imdb": rated.get("imdb"),
            "imdb_votes": rated.get("imdb_votes"),
            "tmdb": details.get("vote_average"),
            "tmdb_votes": details.get("vote_count"),
            "rotten_tomatoes": rated.get("rotten_tomatoes"),
            "metacritic": rated.get("metacritic"),
        },
        "content_rating": rated.get("content_rating"),
        "soundtrack": dict(soundtrack) if soundtrack else None,
        "artwork": dict(artwork),
        "candidates": [s.to_dict() for s in decision.candidates[:5]],
        "warnings": list(decision.warnings),
        "why": why,
    }
    if not movie:
        out["series"] = {"tmdb_id": int(details["id"]), "name": details.get("name")}
        if episode:
            out["episode"] = {"season": episode.get("season_number"),
                              "episode": episode.get("episode_number"), "title": episode.get("name"),
                              "air_date": episode.get("air_date"), "overview": episode.get("overview")}
    return out


def keep_locked(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` with every field named in ``old["locked"]`` (edited by a person) kept as it was
    in ``old``; the ``locked`` list itself carries over."""
    locked = [k for k in old.get("locked") or [] if isinstance(k, str)]
    out = dict(new)
    for key in locked:
        if key in STATE_KEYS:
            continue
        if key in old:
            out[key] = old[key]
        else:
            out.pop(key, None)
    out["locked"] = sorted(set(locked))
    return out
