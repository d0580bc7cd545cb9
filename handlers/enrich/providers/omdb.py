"""OMDb (the Open Movie Database) through the ``omdb`` package 0.10: :class:`Omdb`, and the pure
helpers :func:`ratings` and :func:`year_range` that read its string-typed records.

API: https://www.omdbapi.com/ ("Usage": ``GET /?apikey=&i=`` by IMDb id, ``&t=`` by title with
``y`` (year) and ``type`` (movie, series, episode), ``plot``; every field of a record is a
string, ``"N/A"`` when unknown; failures are ``{"Response": "False", "Error": "..."}``).

Blocking: the enrich service calls it in a worker thread, behind its cache, rate limiter and
the daily budget. Only titles, years and ids are sent, never a local path.

omdb quirks handled here:

* **Base URL**: ``OMDBClient.url`` is a class attribute (``http://www.omdbapi.com``); it is
  overridden on the instance (``client.url = base_url``).
* **Error bodies become empty**: ``OMDBClient.get``/``imdbid``/``title`` turn any body with an
  ``"Error"`` into ``{}`` (and searches into ``[]``), so "Movie not found!", "Invalid API
  key!" and "Request limit reached!" look the same. Here ``OMDBClient.request(...)`` is used:
  it takes the API's own parameter names and returns the ``requests.Response``, whose
  ``"Error"`` text tells them apart (:data:`ERRORS`).
* **Status codes**: ``request`` calls ``raise_for_status()``: a bad key (401) or a 5xx
  surfaces as ``requests.HTTPError``. OMDb also answers "Request limit reached!" with a 401,
  so the body's ``"Error"`` text is read first and the status decides only when there is none
  ("not found" is HTTP 200 with an ``Error``).
* **Timeout**: the client's session is replaced by a :class:`~.http.TimeoutSession` (default
  timeout for every request) and ``timeout`` is also the client's default parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import omdb
import requests

from handlers.enrich.providers import BadKey, NotFound, ProviderError, RateLimited, Unavailable
from handlers.enrich.providers.http import (
    BeforeRequest,
    TimeoutSession,
    error_for_exception,
    error_for_status,
    retry_after,
)

PROVIDER = "omdb"

ERRORS: dict[str, type[ProviderError]] = {
    "movie not found!": NotFound,
    "series not found!": NotFound,
    "episode not found!": NotFound,
    "incorrect imdb id.": NotFound,
    "invalid api key!": BadKey,
    "no api key provided.": BadKey,
    "request limit reached!": RateLimited,
}
"""OMDb's ``Error`` texts (case-folded) and the contract error each means; any other text is a
:class:`ProviderError` (or :class:`Unavailable` with a 5xx)."""

KINDS = ("movie", "series", "episode")


class Omdb:
    """OMDb for one base URL and key; ``timeout`` seconds per request.

    :meth:`by_imdb` and :meth:`by_title` return the raw OMDb record (``Title``, ``Year``,
    ``Rated``, ``imdbRating``, ``Ratings``..., all strings). Thread-safe (requests' session;
    no state kept between calls). :meth:`close` (or ``with``) closes the HTTP session."""

    provider = PROVIDER

    def __init__(self, base_url: str, api_key: str | None, timeout: float = 10.0, *,
                 before_request: BeforeRequest | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._key = (api_key or "").strip()
        self._client = omdb.OMDBClient(apikey=self._key, timeout=timeout)
        self._client.session.close()
        self._session = TimeoutSession(timeout, before_request)
        self._client.session = self._session
        self._client.url = self.base_url

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Omdb:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def by_imdb(self, imdb_id: str) -> dict[str, Any]:
        """The record of an IMDb id (``i=``); :class:`NotFound` for an unknown or malformed id."""
        return self._get(i=imdb_id.strip())

    def by_title(self, title: str, year: int | None = None, kind: str | None = "movie") -> dict[str, Any]:
        """The record OMDb picks for a title (``t=``, ``y=``, ``type=``; ``kind`` None sends no
        type); :class:`NotFound` when there is none."""
        params: dict[str, Any] = {"t": title.strip()}
        if year is not None:
            params["y"] = int(year)
        if kind is not None:
            if kind not in KINDS:
                raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
            params["type"] = kind
        return self._get(**params)

    def _get(self, **params: Any) -> dict[str, Any]:
        if not self._key:
            raise BadKey(PROVIDER, "no API key configured")
        try:
            response = self._client.request(**params)
        except requests.HTTPError as err:
            if err.response is None:
                raise error_for_exception(PROVIDER, err, self.timeout) from None
            response = err.response  # read its body: OMDb's Error text decides (module doc)
        except requests.RequestException as err:
            raise error_for_exception(PROVIDER, err, self.timeout) from None
        return _record(response)


def _record(response: requests.Response) -> dict[str, Any]:
    """The record in an OMDb answer, or the contract error its ``Error``/status means."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and ("Error" in body or body.get("Response") == "False"):
        raise _body_error(str(body.get("Error", "")).strip(), response)
    error = error_for_status(PROVIDER, status, response.headers)
    if error is not None:
        raise error
    if not isinstance(body, dict) or body.get("Response") != "True":
        raise ProviderError(PROVIDER, f"HTTP {status}: not an OMDb record")
    return body


def _body_error(text: str, response: requests.Response) -> ProviderError:
    """The contract error for OMDb's ``Error`` text (:data:`ERRORS`), else by the status."""
    kind = ERRORS.get(text.casefold())
    if kind is RateLimited:
        return RateLimited(PROVIDER, text, retry_after(response.headers))
    if kind is not None:
        return kind(PROVIDER, text)
    if response.status_code >= 500:
        return Unavailable(PROVIDER, f"HTTP {response.status_code}: {text}")
    return (error_for_status(PROVIDER, response.status_code, response.headers, detail=text)
            or ProviderError(PROVIDER, text or "an error without a message"))


# --------------------------------------------------------------------------- record helpers

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _text(value: Any) -> str | None:
    """A field's string, None when absent, empty or ``"N/A"``."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return None if not value or value.upper() == "N/A" else value


def _float(value: Any) -> float | None:
    text = _text(value)
    if text is None:
        return None
    found = _NUMBER.match(text.replace(",", ""))
    return float(found.group()) if found else None


def _int(value: Any) -> int | None:
    number = _float(value)
    return None if number is None else round(number)


def _source(record: Mapping[str, Any], name: str) -> str | None:
    """The ``Value`` of the ``Ratings`` entry from ``Source`` ``name``."""
    for entry in record.get("Ratings") or ():
        if isinstance(entry, Mapping) and entry.get("Source") == name:
            return _text(entry.get("Value"))
    return None


def ratings(record: Mapping[str, Any]) -> dict[str, Any]:
    """The ratings of an OMDb record as numbers::

        {"imdb": 8.1, "imdb_votes": 1191030, "rotten_tomatoes": 92, "metacritic": 69,
         "content_rating": "PG-13"}

    ``imdb`` from ``imdbRating`` (``"8.1"``; else the ``Ratings`` entry ``"8.1/10"``),
    ``imdb_votes`` from ``"1,191,030"``, ``rotten_tomatoes`` (percent) from the ``Ratings``
    entry ``"92%"``, ``metacritic`` from ``Metascore`` (``"69"``; else ``"69/100"``),
    ``content_rating`` from ``Rated``; ``"N/A"`` or absent -> None."""
    imdb = _float(record.get("imdbRating"))
    if imdb is None:
        imdb = _float(_source(record, "Internet Movie Database"))
    metacritic = _int(record.get("Metascore"))
    if metacritic is None:
        metacritic = _int(_source(record, "Metacritic"))
    return {
        "imdb": imdb,
        "imdb_votes": _int(record.get("imdbVotes")),
        "rotten_tomatoes": _int(_source(record, "Rotten Tomatoes")),
        "metacritic": metacritic,
        "content_rating": _text(record.get("Rated")),
    }


_YEARS = re.compile(r"\s*(\d{4})\s*(?:([\u2010-\u2015\-])\s*(\d{4})?)?\s*")


def year_range(text: str) -> tuple[int, int | None]:
    """OMDb's ``Year``: ``"1999"`` -> (1999, 1999); ``"1992–1995"`` (en dash) -> (1992, 1995);
    ``"2010–"`` (still running) -> (2010, None). A hyphen or other dash is accepted too;
    anything else (``"N/A"``) raises ValueError."""
    found = _YEARS.fullmatch(text or "")
    if found is None:
        raise ValueError(f"not an OMDb year or year range: {text!r}")
    start = int(found.group(1))
    if found.group(2) is None:
        return start, start
    end = found.group(3)
    return start, (int(end) if end else None)
