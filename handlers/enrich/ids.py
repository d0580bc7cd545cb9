"""Identifiers a user or a source already gave: they win over any search.

Three places, in this precedence (:func:`merge_ids`): a tag in the file or folder name
(:func:`ids_from_name`), an ``.nfo`` beside the file (:func:`ids_from_nfo`), the metadata of
the source the file came from (:func:`ids_from_source_meta`: an Internet Archive item, a yt-dlp
``.info.json``). Each id records where it came from (:class:`Origin`); two different values
for one id are reported (:class:`IdConflict`), the one of higher precedence kept.

Id formats: an IMDb id is ``tt`` + 7 or 8 digits (the pattern Radarr's parser accepts,
``Parser.ReportImdbId`` ``tt\\d{7,8}``); TMDb and TheTVDB ids are positive integers. A TMDb id
names a movie or a show depending on the namespace (``/movie/603`` and ``/tv/603`` are
different titles): :attr:`Ids.tmdb_kind` says which when the source says it (a TMDb URL, the
nfo's root element), else the parsed type decides.

No network; XML is parsed with defusedxml (an .nfo or ``_meta.xml`` is untrusted input).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

IdSource = Literal["name", "nfo", "source_meta"]
IdField = Literal["tmdb_id", "imdb_id", "tvdb_id"]
TmdbKind = Literal["movie", "tv"]
Scope = Literal["title", "episode"]

ID_FIELDS: tuple[IdField, ...] = ("tmdb_id", "imdb_id", "tvdb_id")

IMDB_ID = re.compile(r"^tt\d{7,8}$")
"""A well-formed IMDb title id."""


@dataclass(frozen=True)
class Origin:
    """Where an id was read: ``source`` (``name``, ``nfo``, ``source_meta``) and ``detail``,
    the text it was read from (``"[tmdbid-603] in 'The Matrix (1999) [tmdbid-603]'"``)."""

    source: IdSource
    detail: str

    def __str__(self) -> str:
        return f"{self.source}: {self.detail}"


@dataclass(frozen=True)
class IdConflict:
    """Two values for one id: ``kept`` (from ``kept_origin``) won over ``other``."""

    field: IdField
    kept: str
    kept_origin: Origin
    other: str
    other_origin: Origin

    def __str__(self) -> str:
        return f"{self.field}: kept {self.kept} ({self.kept_origin}), not {self.other} ({self.other_origin})"


@dataclass(frozen=True)
class Ids:
    """Known identifiers of one title: ``tmdb_id`` (int), ``imdb_id`` (``"tt"`` + 7-8 digits),
    ``tvdb_id`` (int), each ``None`` when not known; ``tmdb_kind`` (``"movie"``/``"tv"``, when
    the source says it); ``origins`` (field -> :class:`Origin`); ``conflicts`` found while
    reading; ``scope`` ``"episode"`` for the ids of one episode (a Kodi ``<episodedetails>``
    nfo), ``"title"`` otherwise."""

    tmdb_id: int | None = None
    imdb_id: str | None = None
    tvdb_id: int | None = None
    tmdb_kind: TmdbKind | None = None
    origins: Mapping[str, Origin] = field(default_factory=dict)
    conflicts: tuple[IdConflict, ...] = ()
    scope: Scope = "title"

    def __bool__(self) -> bool:
        return any(getattr(self, f) is not None for f in ID_FIELDS)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the ids, their origins as text, the conflicts as text."""
        return {
            **{f: getattr(self, f) for f in ID_FIELDS if getattr(self, f) is not None},
            "tmdb_kind": self.tmdb_kind,
            "scope": self.scope,
            "origins": {k: str(v) for k, v in self.origins.items()},
            "conflicts": [str(c) for c in self.conflicts],
        }


class _Collector:
    """Ids in precedence order: the first value of a field wins, a different later value is a
    conflict."""

    def __init__(self) -> None:
        self.values: dict[IdField, int | str] = {}
        self.origins: dict[str, Origin] = {}
        self.conflicts: list[IdConflict] = []
        self.tmdb_kind: TmdbKind | None = None

    def add(self, name: IdField, value: int | str, origin: Origin, tmdb_kind: TmdbKind | None = None) -> None:
        if name not in self.values:
            self.values[name] = value
            self.origins[name] = origin
            if name == "tmdb_id":
                self.tmdb_kind = tmdb_kind
        elif self.values[name] != value:
            self.conflicts.append(
                IdConflict(name, str(self.values[name]), self.origins[name], str(value), origin)
            )
        elif name == "tmdb_id" and self.tmdb_kind is None:
            self.tmdb_kind = tmdb_kind

    def ids(self, scope: Scope = "title", conflicts: Iterable[IdConflict] = ()) -> Ids:
        tmdb, imdb, tvdb = (self.values.get(f) for f in ID_FIELDS)
        return Ids(
            tmdb_id=int(tmdb) if tmdb is not None else None,
            imdb_id=str(imdb) if imdb is not None else None,
            tvdb_id=int(tvdb) if tvdb is not None else None,
            tmdb_kind=self.tmdb_kind if tmdb is not None else None,
            origins=dict(self.origins),
            conflicts=(*conflicts, *self.conflicts),
            scope=scope,
        )


def _imdb(value: str) -> str | None:
    value = value.strip().lower()
    return value if IMDB_ID.match(value) else None


def _number(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


# --- names -------------------------------------------------------------------------------

_NAME_TAG = re.compile(
    r"(?<![A-Za-z0-9])(?P<key>tmdb|imdb|tvdb)(?:id)?\s*[-=]\s*(?P<value>tt\d+|\d+)(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_BARE_IMDB = re.compile(r"(?<![A-Za-z0-9])tt\d{7,8}(?![A-Za-z0-9])", re.IGNORECASE)
_FIELD_OF_KEY: dict[str, IdField] = {"tmdb": "tmdb_id", "imdb": "imdb_id", "tvdb": "tvdb_id"}


def ids_from_name(path_parts: Sequence[str]) -> Ids:
    """Ids tagged in a file's name or its folders' names; ``path_parts`` from the outermost
    folder to the file name (``PurePath.parts`` of a path below the watched folder).

    Recognised, case-insensitive, in brackets or not:

    - Jellyfin: ``[tmdbid-603]``, ``[imdbid-tt0133093]``, ``[tvdbid-81189]``
      (https://jellyfin.org/docs/general/server/media/movies/ , .../shows/);
    - Plex: ``{tmdb-603}``, ``{imdb-tt0133093}``, ``{tvdb-81189}``
      (https://support.plex.tv/articles/naming-and-organizing-your-movie-media-files/);
    - Emby's ``[tmdbid=603]`` form (``=`` for ``-``);
    - a bare ``tt0133093`` (Radarr's ``Parser.ReportImdbId`` takes one anywhere in a name).

    The innermost part wins (a file names itself more exactly than its folder); a different
    value elsewhere is a conflict. A malformed value (``imdbid-123``) is ignored."""
    collected = _Collector()
    for part in reversed(path_parts):
        tagged_imdb: set[str] = set()
        for m in _NAME_TAG.finditer(part):
            name = _FIELD_OF_KEY[m["key"].lower()]
            raw = m["value"]
            value: int | str | None = _imdb(raw) if name == "imdb_id" else _number(raw)
            if value is None:
                continue
            if name == "imdb_id":
                tagged_imdb.add(str(value))
            collected.add(name, value, Origin("name", f"{m.group(0)!r} in {part!r}"))
        for m in _BARE_IMDB.finditer(part):
            value = m.group(0).lower()
            if value not in tagged_imdb:
                collected.add("imdb_id", value, Origin("name", f"bare {m.group(0)!r} in {part!r}"))
    return collected.ids()


# --- free text (URL nfo, descriptions) ---------------------------------------------------

_IMDB_URL = re.compile(r"imdb\.[a-z.]{2,7}/(?:[a-z]{2}/)?title/(tt\d{7,8})(?!\d)", re.IGNORECASE)
_IMDB_OLD_URL = re.compile(r"imdb\.[a-z.]{2,7}/Title\?(\d{7,8})(?!\d)", re.IGNORECASE)
_TMDB_URL = re.compile(r"themoviedb\.org/(movie|tv)/(\d+)", re.IGNORECASE)
_TVDB_URL = re.compile(
    r"thetvdb\.com/(?:\S*?[?&]seriesid=(\d+)|\S*?[?&]tab=series&id=(\d+)|(?:dereferrer/)?series/(\d+)(?![\w-]))",
    re.IGNORECASE,
)
_LABELLED_IMDB = re.compile(
    r"imdb[^A-Za-z0-9\n]{0,5}(?:id[^A-Za-z0-9\n]{0,3})?(tt\d{7,8})(?!\d)", re.IGNORECASE
)


def _text_hits(text: str, *, labelled: bool) -> list[tuple[IdField, int | str, str, TmdbKind | None]]:
    """(field, value, matched text, tmdb kind) of every id URL in ``text``; with
    ``labelled`` also ``IMDb: tt0133093``-style mentions."""
    hits: list[tuple[IdField, int | str, str, TmdbKind | None]] = []
    for m in _IMDB_URL.finditer(text):
        hits.append(("imdb_id", m[1].lower(), m.group(0), None))
    for m in _IMDB_OLD_URL.finditer(text):
        hits.append(("imdb_id", f"tt{m[1]}", m.group(0), None))
    if labelled:
        for m in _LABELLED_IMDB.finditer(text):
            hits.append(("imdb_id", m[1].lower(), m.group(0), None))
    for m in _TMDB_URL.finditer(text):
        kind: TmdbKind = "movie" if m[1].lower() == "movie" else "tv"
        hits.append(("tmdb_id", int(m[2]), m.group(0), kind))
    for m in _TVDB_URL.finditer(text):
        number = next(g for g in m.groups() if g)
        hits.append(("tvdb_id", int(number), m.group(0), None))
    return hits


def _ids_from_text(text: str, source: IdSource, where: str, *, labelled: bool = False) -> Ids:
    """Ids mentioned in free text. Several *different* values of one id in one text (a
    description that links several films) are ambiguous: that id is left out and the
    disagreement reported as a conflict."""
    by_field: dict[IdField, list[tuple[int | str, str, TmdbKind | None]]] = {}
    for name, value, matched, kind in _text_hits(text, labelled=labelled):
        by_field.setdefault(name, []).append((value, matched, kind))
    collected = _Collector()
    conflicts: list[IdConflict] = []
    for name, hits in by_field.items():
        values = {v for v, _, _ in hits}
        first_value, first_text, first_kind = hits[0]
        origin = Origin(source, f"{first_text!r} in {where}")
        if len(values) == 1:
            kinds = [k for _, _, k in hits if k]
            collected.add(name, first_value, origin, kinds[0] if kinds else first_kind)
            continue
        other = next((v, t) for v, t, _ in hits if v != first_value)
        conflicts.append(
            IdConflict(
                name, "(none: ambiguous)", origin, str(other[0]), Origin(source, f"{other[1]!r} in {where}")
            )
        )
    return collected.ids(conflicts=conflicts)


# --- nfo ---------------------------------------------------------------------------------

_NFO_ROOTS = ("movie", "tvshow", "episodedetails", "musicvideo")
_UNIQUEID_TYPES: dict[str, IdField] = {"tmdb": "tmdb_id", "imdb": "imdb_id", "tvdb": "tvdb_id"}
_LEGACY_TAGS: dict[str, IdField] = {
    "tmdbid": "tmdb_id",
    "imdbid": "imdb_id",
    "tvdbid": "tvdb_id",
    "imdb_id": "imdb_id",
}


def _parse_xml(text: str) -> tuple[Element | None, str]:
    """The root element of ``text`` if it is (or begins with) one of Kodi's nfo documents, and
    the text after that document (``""`` when it is all XML; all of ``text`` when none)."""
    stripped = text.lstrip("\ufeff \t\r\n")
    candidates = [(stripped, "")]
    for root in _NFO_ROOTS:  # a "combination nfo": the XML, then a URL line after it
        end = stripped.rfind(f"</{root}>")
        if end != -1:
            cut = end + len(root) + 3
            candidates.append((stripped[:cut], stripped[cut:]))
    for document, rest in candidates:
        try:
            element: Element = SafeET.fromstring(document)
        except (ParseError, DefusedXmlException, ValueError):
            continue
        return element, rest
    return None, text


def ids_from_nfo(text: str | bytes) -> Ids:
    """Ids in a Kodi-style ``.nfo`` (https://kodi.wiki/view/NFO_files and
    https://kodi.wiki/view/NFO_files/Movies).

    Read from the XML, in this order: ``<uniqueid type="tmdb|imdb|tvdb">`` (the one marked
    ``default="true"`` first), the legacy ``<tmdbid>``/``<imdbid>``/``<tvdbid>`` that Jellyfin
    and Emby write, and ``<id>`` when it holds an IMDb id (``<id>`` is "the default ID", an
    IMDb id in older files; a bare number there names no provider and is skipped). Only
    direct children of the root count: ``<actor>`` or ``<set>`` children may carry ids of
    other things. The root element ``<tvshow>`` makes a TMDb id a show's;
    ``<episodedetails>`` marks the ids as one episode's (:attr:`Ids.scope`).

    Then the text that is not XML is searched for provider URLs: all of a "URL nfo" (parsing
    nfo), what a "combination nfo" adds after its XML (a URL in ``<plot>`` is not the
    title's); read the way Kodi's scraper reads them
    (``scraper_datahelper.find_uniqueids_in_text``): ``imdb.com/title/tt…``, the old
    ``imdb.com/Title?0133093``, ``themoviedb.org/movie/603`` or ``/tv/1396``, thetvdb.com
    series URLs. XML values win over URLs. Bytes are decoded as UTF-8, else CP437 (the code
    page of scene .nfo files)."""
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("cp437")
    collected = _Collector()
    root, rest = _parse_xml(text)
    scope: Scope = "title"
    kind: TmdbKind | None = None
    if root is not None:
        tag = root.tag.lower()
        scope = "episode" if tag == "episodedetails" else "title"
        kind = "tv" if tag == "tvshow" else "movie" if tag == "movie" else None
        uniqueids = [el for el in root if el.tag.lower() == "uniqueid"]
        uniqueids.sort(key=lambda el: (el.get("default") or "").lower() != "true")
        for el in uniqueids:
            name = _UNIQUEID_TYPES.get((el.get("type") or "").lower())
            if name:
                _add_nfo_value(collected, name, el.text or "", f"<uniqueid type={el.get('type')!r}>", kind)
        for el in root:
            name = _LEGACY_TAGS.get(el.tag.lower())
            if name:
                _add_nfo_value(collected, name, el.text or "", f"<{el.tag}>", kind)
        for el in root:
            if el.tag.lower() == "id" and _imdb(el.text or ""):
                _add_nfo_value(collected, "imdb_id", el.text or "", "<id>", kind)
    from_text = _ids_from_text(rest, "nfo", "the nfo text")
    for name in ID_FIELDS:
        value = getattr(from_text, name)
        if value is not None:
            collected.add(name, value, from_text.origins[name], from_text.tmdb_kind)
    return collected.ids(scope=scope, conflicts=from_text.conflicts)


def _add_nfo_value(collected: _Collector, name: IdField, raw: str, where: str, kind: TmdbKind | None) -> None:
    value: int | str | None = _imdb(raw) if name == "imdb_id" else _number(raw)
    if value is not None:
        collected.add(
            name, value, Origin("nfo", f"{where}{raw.strip()}"), kind if name == "tmdb_id" else None
        )


# --- source metadata ---------------------------------------------------------------------

_URN = re.compile(r"^urn:(imdb|tmdb|tvdb):(tt\d{7,8}|\d+)$", re.IGNORECASE)
_TEXT_FIELDS = ("description", "notes")


def _values(value: object) -> list[str]:
    """A metadata value as a list of strings (Internet Archive values are a string or a list)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def ids_from_source_meta(meta: Mapping[str, Any]) -> Ids:
    """Ids in the metadata of the source a file came from.

    ``meta`` is an Internet Archive item's metadata (the ``metadata`` object of
    ``/metadata/<identifier>``, a whole such response, or :func:`ia_meta_xml` of a
    ``_meta.xml``) or a yt-dlp ``.info.json`` object. Read:

    - ``external-identifier`` values ``urn:imdb:tt0063350`` (also ``urn:tmdb:``/``urn:tvdb:``),
      Internet Archive's field for the item's ids elsewhere
      (https://archive.org/developers/metadata-schema/index.html#external-identifier). Only
      the item's own: the ``external-identifier`` of entries in ``files`` (e.g.
      ``urn:acoustid:…`` of each track) name recordings, not the item;
    - IMDb/TMDb/TheTVDB URLs and ``IMDb: tt…`` mentions in ``description`` (and IA's
      ``notes``); several different ones make that id ambiguous (left out, reported).

    Identifiers outrank text."""
    if isinstance(meta.get("metadata"), Mapping) and "files" in meta:
        meta = meta["metadata"]
    collected = _Collector()
    for raw in _values(meta.get("external-identifier")) + _values(meta.get("external_identifier")):
        m = _URN.match(raw.strip())
        if not m:
            continue
        name = _FIELD_OF_KEY[m[1].lower()]
        value: int | str | None = _imdb(m[2]) if name == "imdb_id" else _number(m[2])
        if value is not None:
            collected.add(name, value, Origin("source_meta", f"external-identifier {raw.strip()!r}"))
    conflicts: list[IdConflict] = []
    for key in _TEXT_FIELDS:
        for text in _values(meta.get(key)):
            found = _ids_from_text(text, "source_meta", key, labelled=True)
            conflicts.extend(found.conflicts)
            for name in ID_FIELDS:
                value = getattr(found, name)
                if value is not None:
                    collected.add(name, value, found.origins[name], found.tmdb_kind)
    return collected.ids(conflicts=conflicts)


def ia_meta_xml(text: str | bytes) -> dict[str, Any]:
    """An Internet Archive ``<identifier>_meta.xml`` as a metadata dict: each child element of
    ``<metadata>`` by tag name, a string, or a list of strings when the tag repeats (as the
    ``/metadata`` API gives them). ``{}`` when it is not such a document."""
    try:
        root: Element = SafeET.fromstring(text)
    except (ParseError, DefusedXmlException, ValueError):
        return {}
    if root.tag != "metadata":
        return {}
    out: dict[str, Any] = {}
    for el in root:
        value = (el.text or "").strip()
        if el.tag in out:
            previous = out[el.tag]
            out[el.tag] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[el.tag] = value
    return out


# --- precedence --------------------------------------------------------------------------


def merge_ids(*layers: Ids) -> Ids:
    """One :class:`Ids` from several, highest precedence first — call it as
    ``merge_ids(ids_from_name(...), ids_from_nfo(...), ids_from_source_meta(...))`` (name tag >
    nfo > source metadata: what the user typed beats what a tool wrote, which beats what the
    source says). For each id the first layer that has it wins; a different value in a later
    layer is added to ``conflicts`` (after each layer's own). ``tmdb_kind`` comes from the
    winning layer, or a later one naming the same id.

    Raises ``ValueError`` if the layers mix scopes (an episode's ids are not the show's)."""
    scopes = {layer.scope for layer in layers if layer}
    if len(scopes) > 1:
        raise ValueError(f"cannot merge ids of different scopes: {sorted(scopes)}")
    collected = _Collector()
    own: list[IdConflict] = []
    for layer in layers:
        own.extend(layer.conflicts)
        for name in ID_FIELDS:
            value = getattr(layer, name)
            if value is not None:
                collected.add(name, value, layer.origins[name], layer.tmdb_kind)
    return collected.ids(scope=next(iter(scopes), "title"), conflicts=own)
