"""Metadata providers, one small module each, through the real client libraries: TMDb
(:mod:`.tmdb`, ``tmdbv3api``), OMDb (:mod:`.omdb`, ``omdb``), MusicBrainz (:mod:`.musicbrainz`,
``musicbrainzngs``).

A provider call is blocking (the libraries use requests/urllib): the enrich service runs it in a
worker thread, behind the provider's rate limiter, with the cache consulted first. Every call
either returns the provider's answer as plain JSON-able data, or raises one of the errors
below, so the service can tell "not found" (an answer, cached) from "try later" (retried in the
background) from "this provider is unusable until the config changes" (a bad key).
"""

from __future__ import annotations

from harbord.errors import CapabilityError


class ProviderError(CapabilityError):
    """A provider could not answer; ``provider`` names it (``"tmdb"``, ``"omdb"``, ``"musicbrainz"``)."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class NotFound(ProviderError):  # noqa: N818 - an answer, not a failure
    """The provider answered that it has nothing for the request (cached as ``not_found``)."""


class BadKey(ProviderError):  # noqa: N818 - reads as the state of the key
    """The API key is missing, invalid or revoked (TMDb 401 ``status_code`` 7, OMDb 401
    "Invalid API key!"); the provider is paused until the config changes."""


class RateLimited(ProviderError):  # noqa: N818 - reads as a state
    """429 (or OMDb's "Request limit reached!", or the daily budget spent); ``retry_after`` is
    seconds to wait (the ``Retry-After`` header when sent), or None."""

    def __init__(self, provider: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(provider, message)
        self.retry_after = retry_after


class Unavailable(ProviderError):  # noqa: N818 - reads as a state
    """Network error, timeout, or a 5xx: try again later."""
