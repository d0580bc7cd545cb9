"""Choosing a TMDb title for a parsed name: the search plan, the distance, the decision.

No network here: the provider code runs the :class:`SearchQuery` list of :func:`search_plan`
and hands the results back as :class:`Candidate` objects (:meth:`Candidate.from_tmdb` reads a
TMDb search result or details body); this module scores them and decides.

**Distance** (the idea of beets' autotagger, ``beets/autotag/distance.py``: weighted
penalties in 0..1, summed and divided by the summed weights of the penalties present, so a
distance is always in 0..1). Components and weights (:data:`WEIGHTS`):

``title`` (3.0)
    The best (smallest) :func:`title_distance` between any variant of the parsed title
    (:func:`.normalise.title_variants`) and the candidate's title, original title and
    alternative titles. Weight 3.0 as beets weighs ``album``/``track_title``: the title is the
    evidence; everything else confirms it.
``year`` (1.0)
    :func:`year_penalty`: 0 for the same year, 0.1 one year off (festival premiere vs release,
    a year in the name taken from a later release: Kodi retries ``year-1``/``year+1`` for this
    reason), 0.6 two years off, 1.0 beyond. A year that is not known costs 0.5 for a movie (a
    film is named by title *and* year: Radarr, Kodi and Jellyfin naming). For TV a missing
    parsed year costs nothing (Sonarr and Jellyfin put a year in a show's name only to tell
    remakes apart), the component is then left out; a year known on one side only still
    costs 0.5. Weight 1.0 as beets' ``year``.
``episode`` (1.0, TV only)
    Whether the parsed season/episode exists in the candidate show (a flag the provider fills
    from the show's details): 0 yes, 1 no, left out when not known. A show without the parsed
    episode is the wrong show, or the numbering is; either way a person should look.

With these weights (title + year = 4.0): an exact title one year off is 0.025 (strong); an
exact title with no year is 0.125 (medium: a person confirms, since a same-named remake is
only told apart by the year); an exact title two years off is 0.15.

**Decision** (beets' ``_recommendation`` thresholds, ``config_default.yaml``:
``strong_rec_thresh`` 0.04, ``medium_rec_thresh`` 0.25), in :func:`decide`:

- ``applied``: best distance < :data:`STRONG` and the runner-up at least :data:`MIN_GAP`
  further (or no runner-up);
- ``needs_review``: best distance <= :data:`MEDIUM` (or strong but too close to the runner-up);
- ``none``: no candidate, or even the best is further than :data:`MEDIUM`.

**Gap** :data:`MIN_GAP` = 0.10: larger than what one ordinary naming slip costs a right
candidate (a year off by one, 0.025; a missing article, ~0.015; both, 0.04), smaller than what
the nearest clearly different title costs (the same name two years apart, 0.15; a missing year
against a known one, 0.125). So two same-named films a year apart, or one film and its
namesake with an unknown year, go to a person; a remake decades apart does not. beets' own
``rec_gap_thresh`` (0.25) serves another purpose (letting a *weak* match through).

**Ids** (:func:`decide_by_id`): a candidate reached through an id (name tag, .nfo, source
metadata) is applied unless the parsed year contradicts it (:func:`year_conflict`, the rule of
Radarr's ``ParsingService.TryGetMovieByImDbId``: an id match stands only if the parsed year is
unknown or equals the movie's year or secondary year; its tests call the other case
``_wrongYearInfo``); then it needs review and says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from rapidfuzz import fuzz

from .normalise import move_trailing_article, strip_bracketed, title_key, title_variants

Kind = Literal["movie", "tv"]
Status = Literal["applied", "needs_review", "none"]

STRONG = 0.04
"""Distance below which a best candidate may be applied (beets ``strong_rec_thresh``)."""
MEDIUM = 0.25
"""Distance up to which a best candidate is proposed to a person (beets ``medium_rec_thresh``)."""
MIN_GAP = 0.10
"""How much further the runner-up must be for a strong best to be applied (module docstring)."""

WEIGHTS: Mapping[str, float] = {"title": 3.0, "year": 1.0, "episode": 1.0}
"""Weight of each distance component (module docstring)."""

ARTICLE_WEIGHT = 0.1
"""Share of the distance an added or missing leading article keeps (beets ``SD_PATTERNS``
``^the``: 0.1)."""
BRACKET_WEIGHT = 0.3
"""Share of the distance a parenthesised/bracketed part keeps (beets ``SD_PATTERNS``: 0.3)."""

MISSING_YEAR = 0.5
"""Year penalty when a year is known on one side only (or, for a movie, on neither)."""
_YEAR_STEPS = (0.0, 0.1, 0.6)
"""Year penalty by absolute difference 0, 1, 2; 1.0 beyond."""

MIN_YEAR = 1800
"""Years below this are no year (Radarr: ``parsedMovieInfo.Year < 1800``)."""


@dataclass(frozen=True)
class SearchQuery:
    """One TMDb search to run: ``title``, ``year`` (``None``: no year filter), ``kind``
    (``"movie"`` -> ``/search/movie`` with ``year``, ``"tv"`` -> ``/search/tv`` with
    ``first_air_date_year``; https://developer.themoviedb.org/reference/search-movie), and
    ``why`` this query is in the plan."""

    title: str
    year: int | None
    kind: Kind
    why: str


def search_plan(title: str, year: int | None, kind: Kind = "movie") -> list[SearchQuery]:
    """The searches to try for a parsed title, in order: with the year, year-1, year+1, then
    without a year, as Kodi's TMDb scraper does (``metadata.themoviedb.org.python``,
    ``scraper.py`` ``search_for_movie``); then each other variant of the title
    (:func:`.normalise.title_variants`: ``"A AKA B"``, mixed-script titles) with the year and
    without. A trailing article moves to the front (``"Matrix, The"`` -> ``"The Matrix"``).

    How to run it: in order; stop at the first query whose candidates :func:`decide` applies;
    otherwise decide on all candidates seen (:func:`unique`). Kodi stops at the first query
    with any result; that would let a wrong year's results hide the right film. ``[]`` for an
    empty title. A year before 1800 counts as none."""
    title = move_trailing_article(title)
    if not title:
        return []
    year = year if year is not None and year >= MIN_YEAR else None
    plan: list[SearchQuery] = []
    variants = title_variants(title)
    for index, variant in enumerate(variants):
        label = "title" if index == 0 else f"title variant {variant!r}"
        if year is not None:
            plan.append(SearchQuery(variant, year, kind, f"{label}, parsed year"))
            if index == 0:
                plan.append(SearchQuery(variant, year - 1, kind, f"{label}, year-1"))
                plan.append(SearchQuery(variant, year + 1, kind, f"{label}, year+1"))
        plan.append(SearchQuery(variant, None, kind, f"{label}, no year"))
    return plan


@dataclass(frozen=True)
class Candidate:
    """One title a provider offers: ``provider_id`` (the TMDb id), ``kind``, ``title``,
    ``year`` (of the release/first air date; ``None`` if TMDb has none), ``original_title``,
    ``alternative_titles``, ``episode_exists`` (TV: does the parsed season/episode exist;
    ``None`` not known) and ``popularity`` (TMDb's, only to order equal distances)."""

    provider_id: int
    kind: Kind
    title: str
    year: int | None = None
    original_title: str | None = None
    alternative_titles: tuple[str, ...] = ()
    episode_exists: bool | None = None
    popularity: float | None = None

    @property
    def titles(self) -> list[str]:
        """Title, original title and alternative titles, without repeats."""
        out: list[str] = []
        for t in (self.title, self.original_title, *self.alternative_titles):
            if t and t not in out:
                out.append(t)
        return out

    @classmethod
    def from_tmdb(
        cls, result: Mapping[str, Any], kind: Kind, *, episode_exists: bool | None = None
    ) -> Candidate:
        """A candidate from one TMDb search result or details body
        (https://developer.themoviedb.org/reference/search-movie, ``/search/tv``,
        ``/movie/{id}``, ``/tv/{id}``): movies name their fields ``title``/``original_title``/
        ``release_date``, shows ``name``/``original_name``/``first_air_date`` (dates
        ``YYYY-MM-DD``, ``""`` or absent when unknown). ``alternative_titles`` (appended to a
        details body) is ``{"titles": [{"title"}]}`` for a movie and ``{"results": [...]}`` for
        a show."""
        if kind == "movie":
            title, original, date = (
                result.get("title"),
                result.get("original_title"),
                result.get("release_date"),
            )
        else:
            title, original, date = (
                result.get("name"),
                result.get("original_name"),
                result.get("first_air_date"),
            )
        alt = result.get("alternative_titles")
        alternatives: list[str] = []
        if isinstance(alt, Mapping):
            rows = alt.get("titles") or alt.get("results") or []
            alternatives = [str(r["title"]) for r in rows if isinstance(r, Mapping) and r.get("title")]
        popularity = result.get("popularity")
        return cls(
            provider_id=int(result["id"]),
            kind=kind,
            title=str(title or original or ""),
            year=_year_of(date),
            original_title=str(original) if original else None,
            alternative_titles=tuple(alternatives),
            episode_exists=episode_exists,
            popularity=float(popularity) if isinstance(popularity, int | float) else None,
        )


def candidates_from_tmdb(body: Mapping[str, Any], kind: Kind) -> list[Candidate]:
    """The candidates of one TMDb search response body (its ``results`` list)."""
    results = body.get("results") or []
    return [Candidate.from_tmdb(r, kind) for r in results if isinstance(r, Mapping) and "id" in r]


def unique(candidates: Iterable[Candidate]) -> list[Candidate]:
    """``candidates`` without a second copy of the same (kind, id): the union of several
    searches of a plan. The first copy is kept."""
    seen: set[tuple[str, int]] = set()
    out: list[Candidate] = []
    for c in candidates:
        if (c.kind, c.provider_id) not in seen:
            seen.add((c.kind, c.provider_id))
            out.append(c)
    return out


def _year_of(date: object) -> int | None:
    if isinstance(date, int):
        return date if date >= MIN_YEAR else None
    if isinstance(date, str) and len(date) >= 4 and date[:4].isdigit():
        year = int(date[:4])
        return year if year >= MIN_YEAR else None
    return None


@dataclass(frozen=True)
class Query:
    """What the name says: ``title``, ``year`` (``None`` unknown), ``kind``, and for TV the
    parsed ``season``/``episode`` (informational here: the provider turns them into each
    candidate's ``episode_exists``)."""

    title: str
    year: int | None = None
    kind: Kind = "movie"
    season: int | None = None
    episode: int | None = None


@dataclass(frozen=True)
class Component:
    """One penalty: ``name`` (a :data:`WEIGHTS` key), ``value`` in 0..1, its ``weight``, and
    ``why`` in words (``"title distance 0.00 ('The Matrix')"``, ``"year +1"``)."""

    name: str
    value: float
    weight: float
    why: str


@dataclass(frozen=True)
class Scored:
    """A candidate with its ``distance`` (0..1, 0 = identical) and the ``components`` it
    is made of."""

    candidate: Candidate
    distance: float
    components: tuple[Component, ...]

    @property
    def why(self) -> list[str]:
        """Each component's reason, with its share of the distance: ``["title distance 0.00
        ('The Matrix') -> 0.000", "year +1 -> 0.025"]``."""
        total = sum(c.weight for c in self.components) or 1.0
        return [f"{c.why} -> {c.value * c.weight / total:.3f}" for c in self.components]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for ``harbord show`` / ``harbord match --candidates``."""
        c = self.candidate
        return {
            "id": c.provider_id,
            "kind": c.kind,
            "title": c.title,
            "year": c.year,
            "original_title": c.original_title,
            "distance": round(self.distance, 4),
            "why": self.why,
            "components": {k.name: round(k.value, 4) for k in self.components},
        }


def _ratio_distance(a: str, b: str) -> float:
    """1 - rapidfuzz's normalised Indel similarity (``fuzz.ratio``/100) of two keys."""
    if not a and not b:
        return 0.0
    if not a or not b:
        return 1.0
    return 1.0 - fuzz.ratio(a, b) / 100.0


def _article_aware(a: str, b: str) -> float:
    """Distance of the keys without leading articles, plus :data:`ARTICLE_WEIGHT` of what the
    articles add (beets' pattern weighting)."""
    bare = _ratio_distance(title_key(a), title_key(b))
    full = _ratio_distance(title_key(a, drop_article=False), title_key(b, drop_article=False))
    return bare + ARTICLE_WEIGHT * max(0.0, full - bare)


@lru_cache(maxsize=8192)
def title_distance(a: str, b: str) -> float:
    """How different two titles are, 0..1 (0: the same normal form).

    The rapidfuzz ratio (https://rapidfuzz.github.io/RapidFuzz/Usage/fuzz.html#ratio) of the
    :func:`.normalise.title_key` forms, with beets' reduced weights: a parenthesised or
    bracketed part keeps :data:`BRACKET_WEIGHT` of the distance it adds (``"Fight Club"`` vs
    ``"Fight Club (Russian version)"``), a leading article :data:`ARTICLE_WEIGHT`
    (``"Matrix"`` vs ``"The Matrix"``). Pure; results are cached (8192 pairs)."""
    dist = _article_aware(a, b)
    a_plain, b_plain = strip_bracketed(a), strip_bracketed(b)
    if (a_plain, b_plain) != (a, b) and (a_plain or b_plain):
        plain = _article_aware(a_plain, b_plain)
        if plain < dist:
            dist = plain + BRACKET_WEIGHT * (dist - plain)
    return min(1.0, dist)


def year_penalty(parsed: int | None, candidate: int | None, kind: Kind) -> tuple[float, str] | None:
    """The year component's value and reason, or ``None`` when it is left out (TV with no
    parsed year). Values: module docstring."""
    parsed = parsed if parsed is not None and parsed >= MIN_YEAR else None
    if parsed is None and kind == "tv":
        return None
    if parsed is None:
        return MISSING_YEAR, "no year in the name"
    if candidate is None:
        return MISSING_YEAR, f"candidate has no year (name says {parsed})"
    diff = candidate - parsed
    value = _YEAR_STEPS[abs(diff)] if abs(diff) < len(_YEAR_STEPS) else 1.0
    return value, ("year equal" if diff == 0 else f"year {diff:+d}")


def score(query: Query, candidate: Candidate) -> Scored:
    """The distance of ``candidate`` from ``query`` with its components (module docstring)."""
    components: list[Component] = []
    variants = title_variants(query.title) or [query.title]
    best = min(
        ((title_distance(v, t), i, v, t) for i, v in enumerate(variants) for t in candidate.titles),
        default=(1.0, 0, query.title, ""),
    )
    dist, _, variant, title = best
    notes = [f"name part {variant!r}"] if variant != query.title else []
    notes += [f"via {title!r}"] if title != candidate.title else []
    label = f" ({', '.join(notes)})" if notes else ""
    components.append(Component("title", dist, WEIGHTS["title"], f"title distance {dist:.2f}{label}"))
    year = year_penalty(query.year, candidate.year, candidate.kind)
    if year is not None:
        components.append(Component("year", year[0], WEIGHTS["year"], year[1]))
    if candidate.kind == "tv" and candidate.episode_exists is not None:
        exists = candidate.episode_exists
        components.append(
            Component("episode", 0.0 if exists else 1.0, WEIGHTS["episode"],
                      "episode exists" if exists else "episode not in this show")
        )  # fmt: skip
    total = sum(c.weight for c in components)
    distance = sum(c.value * c.weight for c in components) / total if total else 0.0
    return Scored(candidate, distance, tuple(components))


@dataclass(frozen=True)
class Decision:
    """What to do: ``status`` (``applied``, ``needs_review``, ``none``), the ``best`` scored
    candidate (``None`` when there is none), every scored candidate best first, a ``reason``,
    and ``warnings`` (e.g. a year conflict of the applied candidate)."""

    status: Status
    best: Scored | None
    candidates: tuple[Scored, ...]
    reason: str
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (``enrich_state.candidates`` / ``why``, ``harbord show``)."""
        return {
            "status": self.status,
            "best": self.best.to_dict() if self.best else None,
            "reason": self.reason,
            "warnings": list(self.warnings),
            "candidates": [s.to_dict() for s in self.candidates],
        }


def _order(scored: Scored) -> tuple[float, float, int]:
    return (scored.distance, -(scored.candidate.popularity or 0.0), scored.candidate.provider_id)


def decide(candidates: Sequence[Scored]) -> Decision:
    """The decision on scored candidates (thresholds and gap: module docstring). Candidates
    are ordered by distance, then by popularity (higher first), then id, so the result does
    not depend on the order given."""
    ordered = tuple(sorted(candidates, key=_order))
    if not ordered:
        return Decision("none", None, (), "no candidates")
    best = ordered[0]
    gap = ordered[1].distance - best.distance if len(ordered) > 1 else None
    gap_text = (
        "no runner-up" if gap is None else f"gap {gap:.3f} to runner-up {ordered[1].candidate.provider_id}"
    )
    if best.distance < STRONG and (gap is None or gap >= MIN_GAP):
        warnings = tuple(w for w in [_year_warning(best)] if w)
        return Decision("applied", best, ordered, f"strong match {best.distance:.3f}, {gap_text}", warnings)
    if best.distance < STRONG:
        return Decision(
            "needs_review", best, ordered, f"strong match {best.distance:.3f} but {gap_text} < {MIN_GAP}"
        )
    if best.distance <= MEDIUM:
        return Decision(
            "needs_review", best, ordered, f"medium match {best.distance:.3f} (>= {STRONG}), {gap_text}"
        )
    return Decision("none", best, ordered, f"no good candidate: best {best.distance:.3f} > {MEDIUM}")


def _year_warning(scored: Scored) -> str | None:
    for c in scored.components:
        if c.name == "year" and c.value and c.why.startswith("year "):
            return f"applied with {c.why}"
    return None


def match(query: Query, candidates: Iterable[Candidate]) -> Decision:
    """:func:`decide` on every candidate scored against ``query`` (duplicates dropped)."""
    return decide([score(query, c) for c in unique(candidates)])


def year_conflict(
    parsed_year: int | None, candidate_year: int | None, *, other_years: Iterable[int] = ()
) -> str | None:
    """Why the year in the name contradicts the year of a title reached by id, or ``None``.

    No conflict when either year is unknown (a year before 1800 is none), or the parsed year
    equals the candidate's year or one of ``other_years`` (other release dates of the title:
    Radarr's ``SecondaryYear``). Any other difference, one year included, is a conflict, as in
    Radarr's ``ParsingService.TryGetMovieByImDbId``/``TryGetMovieByTmdbId``."""
    if parsed_year is None or parsed_year < MIN_YEAR or candidate_year is None:
        return None
    if parsed_year == candidate_year or parsed_year in set(other_years):
        return None
    return f"wrong year: the name says {parsed_year}, the id's title is from {candidate_year}"


def decide_by_id(
    candidate: Candidate, parsed_year: int | None, *, other_years: Iterable[int] = ()
) -> Decision:
    """The decision for a title reached through an id: ``applied``, or ``needs_review`` with
    the :func:`year_conflict` as reason when the parsed year contradicts it (reported, never
    silently accepted). The id still wins over any search: the candidate is the best."""
    scored = Scored(candidate, 0.0, (Component("id", 0.0, 1.0, "identifier"),))
    conflict = year_conflict(parsed_year, candidate.year, other_years=other_years)
    if conflict:
        return Decision("needs_review", scored, (scored,), conflict, (conflict,))
    return Decision("applied", scored, (scored,), "identifier")
