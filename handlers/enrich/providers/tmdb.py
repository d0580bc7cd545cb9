"""TMDb (The Movie Database, API v3) through ``tmdbv3api`` 1.10: :class:`Tmdb`.

API: https://developer.themoviedb.org/reference/intro/getting-started — ``/configuration``
(https://developer.themoviedb.org/reference/configuration-details), ``/find/{external_id}``
(https://developer.themoviedb.org/reference/find-by-id), ``/search/movie``, ``/search/tv``,
``/movie/{id}``, ``/tv/{id}``, ``/tv/{id}/season/{s}/episode/{e}``, ``append_to_response``
(https://developer.themoviedb.org/docs/append-to-response), images
(https://developer.themoviedb.org/docs/image-basics), errors
(https://developer.themoviedb.org/docs/errors: 401 ``status_code`` 7 invalid key, 404
``status_code`` 34 not found, 429 ``status_code`` 25 over the rate limit).

Blocking: the enrich service calls it in a worker thread, behind its cache and rate limiter.
Every method returns TMDb's JSON as plain dicts/lists, or raises one of the errors of
:mod:`handlers.enrich.providers`. Only titles, years and ids are sent, never a local path.

tmdbv3api quirks handled here:

* **Base URL per instance**: ``TMDb.__init__`` sets ``self._base = "https://api.themoviedb.org/3"``;
  every library object made here gets the configured base URL (a mirror, the tests' replay).
* **Key, language and switches in ``os.environ``**: the ``api_key``/``language`` properties and
  the ``cache``/``wait_on_rate_limit``/``debug``/``proxies`` switches read process-wide
  environment variables (where every child process would inherit the key; ``proxies`` is even
  ``eval``-ed). Each :class:`Tmdb` uses its own subclasses of the library classes
  (:func:`_bind`) that answer those properties from the instance: the key never enters the
  environment, and two instances with different keys or languages do not see each other's.
  (The library still writes ``page``/``total_results``/``total_pages`` and a default
  ``TMDB_LANGUAGE`` there; nothing here reads them.)
* **Session on the class, no timeout, response cache**: the library keeps its session in
  ``self.__class__._session`` (shared by every instance of that class) and, with its cache on,
  calls ``requests.request()`` itself through an ``lru_cache`` that also caches errors (bounded
  to 128 entries in 1.10.0, not unbounded as in earlier releases). Here every object is made
  with ``obj_cached=False`` and ``session=`` a :class:`~.http.TimeoutSession` (default timeout,
  last status/headers kept per thread) held by this instance's own subclasses; caching is the
  enrich service's job.
* **Errors are body-based**: only a JSON body with ``"success": false`` or ``"errors"`` raises
  ``TMDbException`` (with TMDb's message, not the status). The recorded 404 (``status_code`` 34,
  no ``success`` key) comes back as an *object*; a 429's ``Retry-After`` is invisible. The
  session's last response decides: its status maps first (:func:`.http.error_for_status`), the
  exception's message only adds detail.
* **Rate-limit sleep**: the library reads ``X-RateLimit-Remaining``/``-Reset`` and, with
  ``wait_on_rate_limit`` (the default), sleeps until the reset. Here ``wait_on_rate_limit`` is
  False, so the library raises "Rate limit reached. Try again in N seconds." instead, mapped to
  :class:`RateLimited` with ``retry_after`` N.
* **Deprecated shortcuts ignore the base URL**: ``Movie.search``, ``TV.search`` and
  ``Movie.external`` build a fresh ``Search()``/``Find()`` whose ``_base`` is the real host
  again; :class:`Search` and :class:`Find` are used directly.
* **``adult=False`` bug**: ``params += "&include_adult=%s" % "true" if adult else "false"``
  appends a bare ``false`` to the page number; ``adult`` is never passed (TMDb's default is
  to exclude adult titles).
* **Details defaults**: ``Movie.details`` appends ``videos,trailers,images,casts,...`` unless told
  otherwise; :meth:`Tmdb.movie` asks for ``credits,external_ids,alternative_titles`` and, where
  the server's answer lacks an appended part (a mirror or a recording that ignores
  ``append_to_response``), fetches that part on its own (``/movie/{id}/credits``, ...); a part
  the server does not have (404) is left out.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import TracebackType
from typing import Any

import requests
from tmdbv3api import TV, Configuration, Episode, Find, Movie, Search
from tmdbv3api.exceptions import TMDbException

from handlers.enrich.providers import BadKey, NotFound, ProviderError, RateLimited
from handlers.enrich.providers.http import (
    BeforeRequest,
    TimeoutSession,
    error_for_exception,
    error_for_last,
    error_for_status,
)

PROVIDER = "tmdb"

MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""An image larger than this is refused (TMDb's originals are a few MB)."""

_IMDB_ID = re.compile(r"tt\d{7,10}")
_IMAGE_PATH = re.compile(r"/[A-Za-z0-9_-]+\.(?:jpg|jpeg|png|svg|webp)")
_IMAGE_SIZE = re.compile(r"[wh]\d{1,4}|original")
_RATE_LIMIT = re.compile(r"Rate limit reached\. Try again in (-?\d+) seconds")

_MOVIE_PARTS = ("credits", "external_ids", "alternative_titles")
_TV_PARTS = ("credits", "external_ids", "content_ratings")
_EPISODE_PARTS = ("external_ids",)


def _bind(cls: type[Any], session: TimeoutSession, api_key: str, language: str) -> type[Any]:
    """A subclass of the tmdbv3api class ``cls`` for one :class:`Tmdb`: its class-level
    ``_session`` is that instance's session, and the properties the library reads from
    ``os.environ`` answer from the instance instead (module doc)."""
    return type(f"Harbord{cls.__name__}", (cls,), {
        "__module__": __name__,
        "_session": session,
        "api_key": property(lambda self: api_key),
        "language": property(lambda self: language),
        "cache": False,
        "wait_on_rate_limit": False,
        "debug": False,
        "proxies": None,
    })


def _plain(obj: Any) -> Any:
    """The JSON a tmdbv3api ``AsObj`` was built from (it keeps it as ``_json``)."""
    data = getattr(obj, "_json", obj)
    if not isinstance(data, (dict, list)):
        raise ProviderError(PROVIDER, f"unexpected answer of type {type(data).__name__}")
    return data


def _part(data: Any) -> Any:
    """A sub-resource fetched on its own, shaped as ``append_to_response`` nests it (no ``id``)."""
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if k != "id"}
    return data


class Tmdb:
    """TMDb v3 for one base URL, key and language; ``timeout`` seconds per request.

    Methods: :meth:`configuration`, :meth:`find_imdb`, :meth:`search_movie`, :meth:`search_tv`,
    :meth:`movie`, :meth:`tv`, :meth:`episode`, :meth:`image`. Thread-safe (a fresh library
    object per call; the session keeps the last response per thread). :meth:`close` (or
    ``with``) closes the HTTP session."""

    provider = PROVIDER

    def __init__(self, base_url: str, api_key: str | None, language: str = "en-US", timeout: float = 10.0,
                 *, before_request: BeforeRequest | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.language = language
        self.timeout = timeout
        self._key = (api_key or "").strip()
        self._session = TimeoutSession(timeout, before_request)
        self._classes = {cls: _bind(cls, self._session, self._key, language)
                         for cls in (Configuration, Find, Search, Movie, TV, Episode)}

    # ---- lifecycle

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Tmdb:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ---- the calls

    def configuration(self) -> dict[str, Any]:
        """``/configuration``: ``images`` (``secure_base_url``, ``poster_sizes``, ...) and
        ``change_keys``."""
        result: dict[str, Any] = self._call(lambda: self._obj(Configuration).api_configuration())
        return result

    def find_imdb(self, imdb_id: str) -> dict[str, Any]:
        """``/find/{imdb_id}?external_source=imdb_id``: ``movie_results``, ``tv_results`` (and
        the other ``*_results`` arrays TMDb sends), each a list of result dicts; empty lists
        when TMDb knows no such id (an answer, not :class:`NotFound`)."""
        if not _IMDB_ID.fullmatch(imdb_id):
            raise ValueError(f"not an IMDb title id: {imdb_id!r}")
        found: dict[str, Any] = self._call(lambda: self._obj(Find).find_by_imdb_id(imdb_id))
        found.setdefault("movie_results", [])
        found.setdefault("tv_results", [])
        return found

    def search_movie(self, title: str, year: int | None = None) -> list[dict[str, Any]]:
        """``/search/movie`` (first page): result dicts with ``id``, ``title``,
        ``original_title``, ``release_date``, ``overview``, ``popularity``, ``poster_path``..."""
        return self._results(lambda: self._obj(Search).movies(title, year=year))

    def search_tv(self, title: str, year: int | None = None) -> list[dict[str, Any]]:
        """``/search/tv`` (first page; ``year`` is ``first_air_date_year``): result dicts with
        ``id``, ``name``, ``original_name``, ``first_air_date``, ``overview``, ``popularity``..."""
        return self._results(lambda: self._obj(Search).tv_shows(title, release_year=year))

    def movie(self, tmdb_id: int) -> dict[str, Any]:
        """``/movie/{id}`` with ``credits`` (``cast``, ``crew``), ``external_ids`` and
        ``alternative_titles`` appended (fetched separately when the answer lacks them; left
        out when the server has none)."""
        movie = self._obj(Movie)
        details: dict[str, Any] = self._call(
            lambda: movie.details(int(tmdb_id), append_to_response=",".join(_MOVIE_PARTS)))
        fetch: dict[str, Callable[[], Any]] = {
            "credits": lambda: self._obj(Movie).credits(int(tmdb_id)),
            "external_ids": lambda: self._obj(Movie).external_ids(int(tmdb_id)),
            "alternative_titles": lambda: self._obj(Movie).alternative_titles(int(tmdb_id)),
        }
        return self._complete(details, fetch)

    def tv(self, tmdb_id: int) -> dict[str, Any]:
        """``/tv/{id}`` with ``credits``, ``external_ids`` and ``content_ratings`` appended
        (fetched separately when missing, as :meth:`movie`)."""
        details: dict[str, Any] = self._call(
            lambda: self._obj(TV).details(int(tmdb_id), append_to_response=",".join(_TV_PARTS)))
        fetch: dict[str, Callable[[], Any]] = {
            "credits": lambda: self._obj(TV).credits(int(tmdb_id)),
            "external_ids": lambda: self._obj(TV).external_ids(int(tmdb_id)),
            "content_ratings": lambda: self._obj(TV).content_ratings(int(tmdb_id)),
        }
        return self._complete(details, fetch)

    def episode(self, tv_id: int, season: int, episode: int) -> dict[str, Any]:
        """``/tv/{id}/season/{s}/episode/{e}`` (``crew``, ``guest_stars``...) with
        ``external_ids`` appended (fetched separately when missing)."""
        ids = (int(tv_id), int(season), int(episode))
        details: dict[str, Any] = self._call(
            lambda: self._obj(Episode).details(*ids, append_to_response=",".join(_EPISODE_PARTS)))
        fetch: dict[str, Callable[[], Any]] = {
            "external_ids": lambda: self._obj(Episode).external_ids(*ids),
        }
        return self._complete(details, fetch)

    def image(self, path: str, size: str = "w500", base_url: str | None = None) -> bytes:
        """The image at TMDb's ``path`` (``"/abc.jpg"``, from ``poster_path`` etc.) in ``size``
        (``"w92"`` ... ``"original"``), from ``base_url`` or else the configuration's
        ``images.secure_base_url`` (one :meth:`configuration` call: pass ``base_url`` from a
        cached configuration to save it). Same session and timeout; no API key is sent."""
        if not _IMAGE_PATH.fullmatch(path):
            raise ValueError(f"not a TMDb image path: {path!r}")
        if not _IMAGE_SIZE.fullmatch(size):
            raise ValueError(f"not a TMDb image size: {size!r}")
        if base_url is None:
            images = self.configuration().get("images") or {}
            base_url = images.get("secure_base_url") or images.get("base_url")
            if not isinstance(base_url, str) or not base_url:
                raise ProviderError(PROVIDER, "the configuration names no image base URL")
        url = f"{base_url.rstrip('/')}/{size}{path}"
        try:
            with self._session.get(url, stream=True) as response:
                error = error_for_status(PROVIDER, response.status_code, response.headers, f"image {path}")
                if error is not None:
                    raise error
                kind = response.headers.get("Content-Type", "")
                if not kind.startswith("image/"):
                    raise ProviderError(PROVIDER, f"image {path}: not an image ({kind or 'no type'})")
                data = bytearray()
                for chunk in response.iter_content(64 * 1024):
                    data += chunk
                    if len(data) > MAX_IMAGE_BYTES:
                        raise ProviderError(PROVIDER, f"image {path}: larger than {MAX_IMAGE_BYTES} bytes")
                return bytes(data)
        except requests.RequestException as err:
            raise error_for_exception(PROVIDER, err, self.timeout) from None

    # ---- plumbing

    def _obj(self, cls: type[Any]) -> Any:
        """A fresh library object of this instance's subclass of ``cls``, at the base URL."""
        obj = self._classes[cls](obj_cached=False, session=self._session)
        obj._base = self.base_url
        return obj

    def _results(self, search: Callable[[], Any]) -> list[dict[str, Any]]:
        page = self._call(search)
        results = page.get("results") if isinstance(page, dict) else None
        if not isinstance(results, list):
            raise ProviderError(PROVIDER, "a search answer without results")
        return [r for r in results if isinstance(r, dict)]

    def _complete(self, details: dict[str, Any], fetch: dict[str, Callable[[], Any]]) -> dict[str, Any]:
        """Fill the appended parts the answer lacks by fetching each on its own (module doc)."""
        for name, get in fetch.items():
            if name in details:
                continue
            try:
                details[name] = _part(self._call(get))
            except NotFound:
                continue  # the server has no such part: leave it out
        return details

    def _call(self, call: Callable[[], Any]) -> Any:
        """Run one library call: its answer as plain JSON, or the contract error (module doc)."""
        if not self._key:
            raise BadKey(PROVIDER, "no API key configured")
        self._session.forget()
        try:
            result = call()
        except TMDbException as err:
            raise self._library_error(err) from err
        except requests.RequestException as err:
            # e.g. a 5xx with an HTML body that the library then fails to decode as JSON
            status = error_for_last(PROVIDER, self._session.last)
            raise (status or error_for_exception(PROVIDER, err, self.timeout)) from None
        except Exception as err:  # the library tripped over an answer it did not expect
            last = self._session.last
            status = error_for_last(PROVIDER, last)
            if status is None and last is not None and last.headers.get("X-RateLimit-Remaining") == "0":
                # remaining 0 without X-RateLimit-Reset: tmdbv3api computes None - now (TypeError)
                status = RateLimited(PROVIDER, "X-RateLimit-Remaining: 0", None)
            raise (status or ProviderError(PROVIDER, f"unexpected answer: {type(err).__name__}")) from err
        status = error_for_last(PROVIDER, self._session.last, _message(result))
        if status is not None:  # e.g. the 404 (status_code 34) that tmdbv3api returns as an object
            raise status
        return _plain(result)

    def _library_error(self, err: TMDbException) -> ProviderError:
        message = str(err)
        status = error_for_last(PROVIDER, self._session.last, message)
        if status is not None:
            return status
        if message == "No API key found.":
            return BadKey(PROVIDER, message)
        limited = _RATE_LIMIT.search(message)
        if limited:
            return RateLimited(PROVIDER, message, max(0.0, float(limited.group(1))))
        return ProviderError(PROVIDER, message)


def _message(result: Any) -> str:
    """TMDb's ``status_message`` of an error body returned as an object (else "")."""
    data = getattr(result, "_json", None)
    if isinstance(data, dict) and isinstance(data.get("status_message"), str):
        return str(data["status_message"])
    return ""
