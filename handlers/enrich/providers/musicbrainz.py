"""MusicBrainz (web service v2) through ``musicbrainzngs`` 0.7.1: :class:`MusicBrainz`, the
soundtracks of a film and their tracks.

API: https://musicbrainz.org/doc/MusicBrainz_API — lookups, browses and ``inc``
(https://musicbrainz.org/doc/MusicBrainz_API#Browse), URL lookups by resource
(``/ws/2/url?resource=...``), release-group search fields ``releasegroup``, ``secondarytype``,
``firstreleasedate`` (https://musicbrainz.org/doc/MusicBrainz_API/Search#Release_Group),
release-group types (https://musicbrainz.org/doc/Release_Group/Type), rate limiting and the
User-Agent rule (https://musicbrainz.org/doc/MusicBrainz_API/Rate_Limiting: at most 1 request/s,
"declined with a 503"; an application name, version and contact in the User-Agent).

Blocking: the enrich service calls it in a worker thread, behind its cache and rate limiter.
Every method returns plain dicts/lists or raises one of the errors of
:mod:`handlers.enrich.providers`. Only titles, years and ids are sent, never a local path.
:meth:`MusicBrainz.soundtracks_for_imdb` and :meth:`MusicBrainz.tracks` make several requests
each: pass ``before_request`` to take a rate-limiter token per request.

musicbrainzngs quirks handled here:

* **Module-global state**: the User-Agent (``set_useragent``; without one every call raises
  ``UsageError``), the host and scheme (``set_hostname(host, use_https)``), the format and
  parser (``set_format``) and the rate limiter (``set_rate_limit``) are module globals. Each
  call takes :data:`_LOCK`, applies this instance's settings, and puts host, scheme, format,
  parser and the limiter switch back afterwards (the User-Agent stays harbord's). The library's
  own 1 request/s limiter is switched off during the call: limiting is the enrich service's job,
  and the library's limiter sleeps. The JSON format is selected without ``set_format("json")``,
  which warns "The json format is non-official" on every call.
* **No timeout, 8 tries, ~56 s of sleeps**: ``_mb_request`` builds its opener with
  ``urllib.request.build_opener`` and hands it to ``_safe_read(opener, req, body,
  max_retries=8, retry_delay_delta=2.0)``, which calls ``opener.open(req)`` without a timeout
  (so the process-wide socket default: none) and retries 500/502/503, other unknown statuses,
  socket timeouts and connection resets, sleeping 2, 4, ..., 14 s between tries, ignoring
  ``Retry-After``. Version 0.7.1 has no parameter, setting or handler hook for either (the
  opener's handlers are fixed inside ``_mb_request``; ``opener.open`` is called with no
  timeout). The one way in is that private function: :func:`_bounded_safe_read` replaces
  ``musicbrainzngs.musicbrainz._safe_read`` (installed once, :func:`_install`, which checks the
  signature first). For calls made by this module (a thread-local marks them) it runs the
  original with ``max_retries=1`` (one try, so no sleep) and an opener whose ``open`` passes
  this instance's timeout; everyone else's calls go to the original untouched.
* **Errors**: 400/404 raise ``ResponseError`` (404 -> :class:`NotFound`; 400, "Invalid mbid",
  also :class:`NotFound`: nothing has that id), 401 ``AuthenticationError``
  (:class:`BadKey`), connection failures ``NetworkError`` (:class:`Unavailable`). With one try, a
  5xx or 429 arrives as ``NetworkError`` whose ``cause`` is the ``HTTPError``: 429 and 503
  (MusicBrainz's documented rate-limit answer) -> :class:`RateLimited` with ``Retry-After``,
  other 5xx -> :class:`Unavailable`.
* **No ``browse_releases(imdb=...)``**: a film's soundtracks are the release groups related to
  its IMDb URL entity, ``browse_urls(resource="https://www.imdb.com/title/tt.../",
  includes=["release-group-rels"])``, asked in JSON (the relation targets come back as
  ``release_group`` objects with ``direction: backward``). The targets carry no usable types
  (``primary-type: null``, ``secondary-types: []`` even on soundtrack albums, artists'
  ``type: null`` likewise), so each is looked up (``get_release_group_by_id``) for its
  secondary types.
* **Search fields**: musicbrainzngs 0.7.1's list of release-group search fields lacks
  ``firstreleasedate``, so the strict query is written here (:func:`soundtrack_query`, values
  escaped with the library's ``LUCENE_SPECIAL``) and passed as a raw ``query``.
"""

from __future__ import annotations

import inspect
import json
import re
import socket
import threading
import urllib.error
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast

import musicbrainzngs
from musicbrainzngs import musicbrainz as _mb

import harbord
from handlers.enrich.providers import BadKey, NotFound, ProviderError, RateLimited, Unavailable
from handlers.enrich.providers.http import BeforeRequest, error_for_status, retry_after

PROVIDER = "musicbrainz"

APP = "harbord"

MAX_RELATED_GROUPS = 10
"""At most this many release groups related to one IMDb URL are looked up."""

BROWSE_LIMIT = 100
"""Releases per browse (the web service's maximum)."""

_LOCK = threading.Lock()
"""Held for each call: musicbrainzngs's settings are module globals (module doc)."""

_BOUND = threading.local()
"""``value``: the :class:`_Bound` of the call this thread is making through this module."""

_ORIGINAL_SAFE_READ: Callable[..., bytes] | None = None


@dataclass(frozen=True)
class _Bound:
    timeout: float
    before_request: BeforeRequest | None


class _TimedOpener:
    """What ``_safe_read`` calls ``open`` on: the library's opener, with a timeout."""

    def __init__(self, opener: Any, timeout: float) -> None:
        self._opener = opener
        self._timeout = timeout

    def open(self, req: Any, data: Any = None) -> Any:
        return self._opener.open(req, data, timeout=self._timeout)


def _bounded_safe_read(opener: Any, req: Any, body: Any = None, max_retries: int = 8,
                       retry_delay_delta: float = 2.0) -> bytes:
    """Stands in for ``musicbrainzngs.musicbrainz._safe_read`` (module doc): one try with this
    module's timeout for calls made through :class:`MusicBrainz`, the original otherwise."""
    original = _ORIGINAL_SAFE_READ
    assert original is not None
    bound: _Bound | None = getattr(_BOUND, "value", None)
    if bound is None:
        return original(opener, req, body, max_retries, retry_delay_delta)
    if bound.before_request is not None:
        bound.before_request()
    return original(_TimedOpener(opener, bound.timeout), req, body, max_retries=1)


_bounded_safe_read.harbord_bounded = True  # type: ignore[attr-defined]


def _install() -> None:
    """Put :func:`_bounded_safe_read` in place of ``musicbrainzngs.musicbrainz._safe_read``
    (once; the ONLY patch of the library, see the module doc). Refuses when the private
    function is not the one this was written against."""
    global _ORIGINAL_SAFE_READ
    with _LOCK:
        current = getattr(_mb, "_safe_read", None)
        if getattr(current, "harbord_bounded", False):
            return
        params = list(inspect.signature(current).parameters) if callable(current) else []
        if params != ["opener", "req", "body", "max_retries", "retry_delay_delta"]:
            raise ProviderError(PROVIDER, "musicbrainzngs changed: _safe_read(opener, req, body, "
                                          f"max_retries, retry_delay_delta) expected, found {params}; "
                                          "cannot bound its retries")
        _ORIGINAL_SAFE_READ = current
        _mb._safe_read = _bounded_safe_read


def installed() -> bool:
    """Whether musicbrainzngs's retry loop is bounded (for doctor checks and tests)."""
    return bool(getattr(getattr(_mb, "_safe_read", None), "harbord_bounded", False))


# --------------------------------------------------------------------------- pure helpers


def soundtrack_query(title: str, year: int | None = None) -> str:
    """The strict release-group search for a film's soundtrack:
    ``releasegroup:"<title>" AND secondarytype:soundtrack[ AND firstreleasedate:<year>]``."""
    escaped = re.sub(_mb.LUCENE_SPECIAL, r"\\\1", " ".join(title.split()))
    if not escaped:
        raise ValueError("an empty title")
    query = f'releasegroup:"{escaped}" AND secondarytype:soundtrack'
    if year is not None:
        query += f" AND firstreleasedate:{int(year)}"
    return query


def _group(data: Mapping[str, Any]) -> dict[str, Any]:
    """A release group as returned here (from musicbrainzngs's XML parse)."""
    return {
        "id": data.get("id"),
        "title": data.get("title"),
        "first_release_date": data.get("first-release-date") or None,
        "secondary_types": [str(t) for t in data.get("secondary-type-list") or ()],
    }


def is_soundtrack(group: Mapping[str, Any]) -> bool:
    return any(str(t).casefold() == "soundtrack" for t in group.get("secondary_types") or ())


def _track_count(release: Mapping[str, Any]) -> int:
    count = 0
    for medium in release.get("medium-list") or ():
        try:
            count += int(medium.get("track-count") or len(medium.get("track-list") or ()))
        except (TypeError, ValueError):
            continue
    return count


def best_release(releases: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The release of a group to take tracks from: official first, then the earliest date
    (undated last), then the most tracks (``medium-list[].track-count``, from ``inc=media``);
    the first of equals. None for no releases."""
    def key(item: tuple[int, Mapping[str, Any]]) -> tuple[bool, str, int, int]:
        index, release = item
        official = str(release.get("status") or "").casefold() == "official"
        date = str(release.get("date") or "") or "9999"
        return (not official, date, -_track_count(release), index)

    if not releases:
        return None
    return min(enumerate(releases), key=key)[1]


def _names(credit: Any) -> list[str]:
    """Artist names of a musicbrainzngs ``artist-credit`` list (join phrases skipped)."""
    names = []
    for entry in credit or ():
        if isinstance(entry, Mapping):
            name = entry.get("name") or (entry.get("artist") or {}).get("name")
            if name:
                names.append(str(name))
    return names


def _seconds(*lengths: Any) -> float | None:
    for length in lengths:
        try:
            return int(length) / 1000.0
        except (TypeError, ValueError):
            continue
    return None


def release_tracks(release: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The tracks of a release (musicbrainzngs parse of ``inc=recordings+artist-credits``), all
    media in order: ``title`` (the track's, else the recording's), ``artists`` (the track's
    credit, else the recording's, else the release's), ``length_seconds``."""
    tracks = []
    for medium in release.get("medium-list") or ():
        for track in medium.get("track-list") or ():
            recording = track.get("recording") or {}
            artists = (_names(track.get("artist-credit")) or _names(recording.get("artist-credit"))
                       or _names(release.get("artist-credit")))
            tracks.append({
                "title": track.get("title") or recording.get("title"),
                "artists": artists,
                "length_seconds": _seconds(track.get("length"), recording.get("length")),
            })
    return tracks


# --------------------------------------------------------------------------- errors


def _http_error(err: urllib.error.HTTPError, what: str) -> ProviderError:
    headers = cast(Mapping[str, str], err.headers)
    err.close()  # its body (an <error> document) is not needed
    if err.code in (400, 404):
        return NotFound(PROVIDER, f"HTTP {err.code} ({what})")
    if err.code in (429, 503):
        wait = retry_after(headers)
        return RateLimited(PROVIDER, f"HTTP {err.code} ({what})", wait)
    return error_for_status(PROVIDER, err.code, headers, what) or ProviderError(PROVIDER, f"HTTP {err.code}")


def _translate(err: Exception, what: str, timeout: float) -> ProviderError:
    """The contract error for a musicbrainzngs exception (module doc)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, urllib.error.HTTPError):
        return _http_error(cause, what)
    if isinstance(err, musicbrainzngs.AuthenticationError):
        return BadKey(PROVIDER, f"authentication refused ({what})")
    if isinstance(err, musicbrainzngs.NetworkError):
        reason = getattr(cause, "reason", cause)
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return Unavailable(PROVIDER, f"timed out after {timeout:g} s ({what})")
        if reason is None:  # a connection reset: _safe_read gives up without a cause
            return Unavailable(PROVIDER, f"connection reset ({what})")
        return Unavailable(PROVIDER, f"cannot connect: {type(reason).__name__} ({what})")
    if isinstance(err, musicbrainzngs.ResponseError):
        return ProviderError(PROVIDER, f"unreadable answer ({what})")
    return ProviderError(PROVIDER, f"{type(err).__name__}: {err} ({what})")


# --------------------------------------------------------------------------- the client


class MusicBrainz:
    """MusicBrainz at ``host`` (``host[:port]``), over https or not; ``timeout`` seconds per
    request, one try each; ``version`` and ``contact`` go into the User-Agent
    (``harbord/<version> python-musicbrainzngs/0.7.1 ( <contact> )``).

    Methods: :meth:`soundtracks_for_imdb`, :meth:`search_soundtrack`, :meth:`tracks`, and
    the steps they are made of, :meth:`imdb_release_groups`, :meth:`release_group`,
    :meth:`releases`, :meth:`release`. Thread-safe (calls are serialised, module doc)."""

    provider = PROVIDER

    def __init__(self, host: str = "musicbrainz.org", https: bool = True, timeout: float = 10.0,
                 version: str = harbord.__version__, *, contact: str | None = None,
                 before_request: BeforeRequest | None = None) -> None:
        self.host = host
        self.https = https
        self.timeout = timeout
        self.version = version
        self.contact = contact
        self._bound = _Bound(timeout, before_request)
        _install()

    def close(self) -> None:
        """Nothing to close (urllib opens a connection per request); for symmetry."""

    def __enter__(self) -> MusicBrainz:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ---- soundtracks of a film

    def soundtracks_for_imdb(self, imdb_id: str) -> list[dict[str, Any]]:
        """The soundtrack release groups linked to a film's IMDb page: ``id``, ``title``,
        ``first_release_date``, ``secondary_types`` (containing ``"Soundtrack"``). One URL
        lookup, then one release-group lookup per related group (at most
        :data:`MAX_RELATED_GROUPS`; a group gone meanwhile is skipped). :class:`NotFound` when
        MusicBrainz has no URL entity for that IMDb page."""
        found = []
        for related in self.imdb_release_groups(imdb_id)[:MAX_RELATED_GROUPS]:
            try:
                group = self.release_group(related["id"])
            except NotFound:
                continue
            if is_soundtrack(group):
                found.append(group)
        return found

    def imdb_release_groups(self, imdb_id: str) -> list[dict[str, Any]]:
        """The release groups related to the IMDb URL of ``imdb_id`` (``id``, ``title``,
        ``first_release_date``, as the relation targets give them; their types are not
        reliable there, see the module doc)."""
        if not re.fullmatch(r"tt\d{7,10}", imdb_id):
            raise ValueError(f"not an IMDb title id: {imdb_id!r}")
        resource = f"https://www.imdb.com/title/{imdb_id}/"
        answer = self._call("json", f"url {resource}", lambda: musicbrainzngs.browse_urls(
            resource=resource, includes=["release-group-rels"]))
        groups, seen = [], set()
        for relation in answer.get("relations") or ():
            target = relation.get("release_group") or relation.get("release-group")
            if relation.get("target-type") not in ("release_group", "release-group") or not target:
                continue
            if target.get("id") in seen:
                continue
            seen.add(target.get("id"))
            groups.append({"id": target.get("id"), "title": target.get("title"),
                           "first_release_date": target.get("first-release-date") or None})
        return groups

    def release_group(self, release_group_id: str) -> dict[str, Any]:
        """One release group (``id``, ``title``, ``first_release_date``, ``secondary_types``)."""
        answer = self._call("xml", f"release-group {release_group_id}",
                            lambda: musicbrainzngs.get_release_group_by_id(release_group_id))
        return _group(answer.get("release-group") or {})

    def search_soundtrack(self, title: str, year: int | None = None, limit: int = 10) -> list[dict[str, Any]]:
        """Soundtrack release groups by title (:func:`soundtrack_query`), best first:
        ``id``, ``title``, ``first_release_date``, ``secondary_types``, ``score`` (the search's
        ``ext:score``, 0-100). Hits without the Soundtrack type are dropped."""
        query = soundtrack_query(title, year)
        answer = self._call("xml", "release-group search",
                            lambda: musicbrainzngs.search_release_groups(query=query, limit=limit))
        hits = []
        for data in answer.get("release-group-list") or ():
            group = _group(data)
            if not is_soundtrack(group):
                continue
            try:
                group["score"] = int(data.get("ext:score"))
            except (TypeError, ValueError):
                group["score"] = None
            hits.append(group)
        hits.sort(key=lambda g: -(g["score"] or 0))
        return hits

    # ---- tracks of a soundtrack

    def tracks(self, release_group_id: str) -> dict[str, Any]:
        """The tracks of a release group: its releases are browsed (:meth:`releases`), the best
        one picked (:func:`best_release`) and read with recordings and artist credits::

            {"release_id": "...", "tracks": [{"title", "artists": [str], "length_seconds"}]}

        :class:`NotFound` when the group has no releases."""
        best = best_release(self.releases(release_group_id))
        if best is None or not best.get("id"):
            raise NotFound(PROVIDER, f"release-group {release_group_id} has no releases")
        release = self.release(str(best["id"]))
        return {"release_id": release.get("id") or best["id"], "tracks": release_tracks(release)}

    def releases(self, release_group_id: str) -> list[dict[str, Any]]:
        """The releases of a group with their media (``inc=media``: track counts), as parsed by
        musicbrainzngs (``id``, ``title``, ``status``, ``date``, ``medium-list``...)."""
        answer = self._call("xml", f"releases of {release_group_id}", lambda: musicbrainzngs.browse_releases(
            release_group=release_group_id, includes=["media"], limit=BROWSE_LIMIT))
        return [dict(r) for r in answer.get("release-list") or ()]

    def release(self, release_id: str) -> dict[str, Any]:
        """One release with ``recordings`` and ``artist-credits``, as parsed by musicbrainzngs."""
        answer = self._call("xml", f"release {release_id}", lambda: musicbrainzngs.get_release_by_id(
            release_id, includes=["recordings", "artist-credits"]))
        return dict(answer.get("release") or {})

    # ---- plumbing

    @contextmanager
    def _settings(self, fmt: str) -> Iterator[None]:
        """This instance's musicbrainzngs settings for one call, under :data:`_LOCK`, put back
        afterwards (module doc)."""
        with _LOCK:
            saved = (_mb.hostname, _mb.https, _mb.ws_format, _mb.parser_fun, _mb.do_rate_limit)
            try:
                musicbrainzngs.set_useragent(APP, self.version, self.contact)
                musicbrainzngs.set_hostname(self.host, use_https=self.https)
                musicbrainzngs.set_rate_limit(False)
                # set_format("json") minus its warning on every call
                _mb.ws_format = fmt
                musicbrainzngs.set_parser(json.loads if fmt == "json" else None)
                _BOUND.value = self._bound
                yield
            finally:
                _BOUND.value = None
                _mb.hostname, _mb.https, _mb.ws_format, _mb.parser_fun, _mb.do_rate_limit = saved

    def _call(self, fmt: str, what: str, call: Callable[[], Any]) -> dict[str, Any]:
        try:
            with self._settings(fmt):
                answer = call()
        except musicbrainzngs.MusicBrainzError as err:
            raise _translate(err, what, self.timeout) from err
        except ValueError as err:  # json.loads of a body that is not JSON
            raise ProviderError(PROVIDER, f"unreadable answer ({what})") from err
        if not isinstance(answer, dict):
            raise ProviderError(PROVIDER, f"unexpected answer ({what})")
        return answer
