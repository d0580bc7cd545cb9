"""Metadata providers, one small module each, through the real client libraries: TMDb
(:mod:`.tmdb`, ``tmdbv3api``), OMDb (:mod:`.omdb`, ``omdb``), MusicBrainz (:mod:`.musicbrainz`,
``musicbrainzngs``).

A provider call is blocking (the libraries use requests/urllib): the enrich service runs it in a
worker thread, behind the provider's rate limiter, with the cache consulted first. Every call
either returns the provider's answer as plain JSON-able data, or raises one of the errors
below, so the service can tell "not found" (an answer, cached) from "try later" (retried in the
background) from "this provider is unusable until the config changes" (a bad key). The error
classes live in :mod:`harbord.errors` with every other one.
"""

from __future__ import annotations

from harbord.errors import BadKey, NotFound, ProviderError, RateLimited, Unavailable

__all__ = ["BadKey", "NotFound", "ProviderError", "RateLimited", "Unavailable"]
