"""The HTTP plumbing shared by the requests-based providers (TMDb through tmdbv3api, OMDb through
omdb): :class:`TimeoutSession`, a ``requests.Session`` that gives every request a default
timeout and remembers the last response per thread, and the helpers that turn a status code or
a requests exception into the provider error contract (:mod:`handlers.enrich.providers`).

Why a session subclass: neither library passes a timeout on its own (tmdbv3api calls
``session.request(method, url, data=..., json=..., proxies=...)`` with none; omdb passes one only
when asked), and tmdbv3api hides the response behind its object wrapper: a 404 comes back as an
object with ``status_code`` 34 and a 429's ``Retry-After`` header is lost. The session sees every
response first, so the provider can read the status and headers of the call it just made
(per thread: one provider object may serve several worker threads).

``timeout`` bounds the connect and every read of the response (requests' semantics,
https://requests.readthedocs.io/en/latest/user/advanced/#timeouts: a server that never answers
fails after ``timeout``; one that trickles bytes could take longer); requests' default adapter
does not retry (urllib3 ``Retry(0, read=False)``), so one call is one attempt.

Status mapping (:func:`error_for_status`): 401/403 -> :class:`BadKey`, 404 -> :class:`NotFound`,
429 -> :class:`RateLimited` with ``Retry-After`` (delta-seconds or an HTTP-date, RFC 9110
section 10.2.3), 5xx -> :class:`Unavailable`, any other 4xx -> :class:`ProviderError`.
Exception mapping (:func:`error_for_exception`): timeouts, connection errors and broken
transfers -> :class:`Unavailable`; an ``HTTPError`` by its response's status; an undecodable body
-> :class:`ProviderError`. API keys travel in query strings (TMDb ``api_key``, OMDb ``apikey``)
and requests puts the URL into its messages, so messages built here are redacted and carry the
path only, never the query.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from handlers.enrich.providers import BadKey, NotFound, ProviderError, RateLimited, Unavailable

BeforeRequest = Callable[[], None]
"""Called (blocking, in the calling thread) before each HTTP request a provider makes: where the
enrich service may take a rate-limiter token per request rather than per method call (a method
such as ``Tmdb.movie`` or ``MusicBrainz.tracks`` may make several requests). Providers never
sleep or limit by themselves."""


@dataclass(frozen=True)
class LastResponse:
    """What :class:`TimeoutSession` kept of the last response in this thread."""

    status: int
    headers: Mapping[str, str]
    """Case-insensitive (requests' ``CaseInsensitiveDict``)."""
    path: str
    """The request's path, without the query (which may hold an API key)."""


class TimeoutSession(requests.Session):
    """A ``requests.Session`` whose requests default to ``timeout`` seconds and which keeps the
    status and headers of the last response per thread (:attr:`last`)."""

    def __init__(self, timeout: float, before_request: BeforeRequest | None = None) -> None:
        super().__init__()
        self.timeout = timeout
        self.before_request = before_request
        self._local = threading.local()

    @property
    def last(self) -> LastResponse | None:
        """The last response this thread received through the session (None: none since
        :meth:`forget`, e.g. the request failed before an answer)."""
        last: LastResponse | None = getattr(self._local, "last", None)
        return last

    def forget(self) -> None:
        """Drop this thread's :attr:`last` (call before a library call, then read it after)."""
        self._local.last = None

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        self._local.last = None
        if self.before_request is not None:
            self.before_request()
        response: requests.Response = super().request(method, url, *args, **kwargs)
        path = urlsplit(url if isinstance(url, str) else url.decode("utf-8", "replace")).path
        self._local.last = LastResponse(response.status_code, response.headers, path)
        return response


def retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds (``"120"``) or an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``, counted from ``now``, never negative); None when the
    header is absent or unreadable."""
    if not headers:
        return None
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT by definition
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_for_status(provider: str, status: int, headers: Mapping[str, str] | None = None,
                     what: str = "", detail: str = "") -> ProviderError | None:
    """The contract error for an HTTP status (None for 1xx-3xx); ``what`` names the request in
    the message (a path, never a query string), ``detail`` is the provider's own words."""
    where = (f" ({what})" if what else "") + (f": {detail}" if detail else "")
    if status < 400:
        return None
    if status in (401, 403):
        return BadKey(provider, f"HTTP {status}: the API key was refused{where}")
    if status == 404:
        return NotFound(provider, f"HTTP 404{where}")
    if status == 429:
        wait = retry_after(headers)
        return RateLimited(provider, f"HTTP 429{where}" + (f", retry after {wait:g} s" if wait is not None
                                                             else ""), wait)
    if status >= 500:
        return Unavailable(provider, f"HTTP {status}{where}")
    return ProviderError(provider, f"HTTP {status}{where}")


def error_for_last(provider: str, last: LastResponse | None, detail: str = "") -> ProviderError | None:
    """:func:`error_for_status` of a :class:`LastResponse` (None when there is none or it was
    a success)."""
    if last is None:
        return None
    return error_for_status(provider, last.status, last.headers, last.path, detail)


def error_for_exception(provider: str, err: requests.RequestException, timeout: float | None = None
                        ) -> ProviderError:
    """The contract error for a requests exception (message redacted: type and path only)."""
    request = getattr(err, "request", None)
    url = getattr(request, "url", None)
    where = f" ({urlsplit(url).path})" if isinstance(url, str) else ""
    response = getattr(err, "response", None)
    if response is not None and response.status_code >= 400:
        status_error = error_for_status(provider, response.status_code, response.headers,
                                        urlsplit(response.url or "").path)
        if status_error is not None:
            return status_error
    if isinstance(err, requests.Timeout):
        limit = f" after {timeout:g} s" if timeout is not None else ""
        return Unavailable(provider, f"timed out{limit}{where}")
    if isinstance(err, requests.ConnectionError):
        return Unavailable(provider, f"cannot connect: {type(err).__name__}{where}")
    if isinstance(err, requests.exceptions.InvalidJSONError):
        return ProviderError(provider, f"the answer is not valid JSON{where}")
    if isinstance(err, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return Unavailable(provider, f"broken transfer: {type(err).__name__}{where}")
    if isinstance(err, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema)):
        return ProviderError(provider, f"bad base URL: {type(err).__name__}")
    return Unavailable(provider, f"request failed: {type(err).__name__}{where}")


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every non-empty secret replaced by ``REDACTED``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "REDACTED")
    return text
