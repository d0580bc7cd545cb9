"""Fixtures for the enrichment tests: the replay server and the three real client libraries
pointed at it by configuration only (no patched internals), with their process-wide state
(tmdbv3api's environment variables, request cache and class-level sessions; musicbrainzngs's
module globals) put back after each test so that tests do not leak into each other."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import musicbrainzngs
import omdb
import pytest
from tmdbv3api.tmdb import TMDb

from tests.support.replay import ReplayServer

T = TypeVar("T", bound=TMDb)

TMDB_KEY = "replay-tmdb-key"
OMDB_KEY = "replay-omdb-key"

_TMDB_ENV = (
    TMDb.TMDB_API_KEY, TMDb.TMDB_LANGUAGE, TMDb.TMDB_SESSION_ID, TMDb.TMDB_WAIT_ON_RATE_LIMIT,
    TMDb.TMDB_DEBUG_ENABLED, TMDb.TMDB_CACHE_ENABLED, TMDb.TMDB_PROXIES,
    "page", "total_results", "total_pages",  # tmdbv3api copies every response's paging here
)
"""Every ``os.environ`` key tmdbv3api reads or writes."""


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    """A running replay server (four ports), stopped and its threads joined at teardown."""
    with ReplayServer() as server:
        yield server


def _tmdb_classes() -> list[type[TMDb]]:
    found, todo = [], [TMDb]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@pytest.fixture
def tmdb(replay: ReplayServer) -> Iterator[Callable[..., Any]]:
    """``tmdb(tmdbv3api.Movie, **kwargs)``: a tmdbv3api object whose per-instance ``_base``
    points at the replay server, with ``TMDB_API_KEY`` set. At teardown the environment keys
    tmdbv3api uses, its ``lru_cache`` of responses and any session a test handed to a class
    are put back as they were."""
    saved = {key: os.environ.get(key) for key in _TMDB_ENV}
    TMDb.cached_request.cache_clear()
    os.environ[TMDb.TMDB_API_KEY] = TMDB_KEY

    def make(cls: type[T], **kwargs: Any) -> T:
        obj: T = cls(**kwargs)
        obj._base = replay.tmdb_base
        return obj

    try:
        yield make
    finally:
        TMDb.cached_request.cache_clear()
        for cls in _tmdb_classes():
            session = vars(cls).get("_session")
            if session is not None:
                session.close()
                if cls is TMDb:
                    TMDb._session = None
                else:
                    delattr(cls, "_session")
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def omdb_client(replay: ReplayServer) -> Iterator[omdb.OMDBClient]:
    """An ``omdb.OMDBClient`` whose ``url`` (a class attribute, overridden on the instance)
    points at the replay server; ``apikey`` and ``timeout`` are its default params."""
    client = omdb.OMDBClient(apikey=OMDB_KEY, timeout=5)
    client.url = replay.omdb_url
    yield client
    client.session.close()


@pytest.fixture
def musicbrainz(replay: ReplayServer) -> Iterator[Any]:
    """The ``musicbrainzngs`` module pointed at the replay server (plain http, no rate
    limit), its globals put back to the library defaults at teardown."""
    musicbrainzngs.set_useragent("harbord-tests", "0.1", "harbord test suite")
    musicbrainzngs.set_hostname(replay.musicbrainz_host, use_https=False)
    musicbrainzngs.set_rate_limit(False)
    try:
        yield musicbrainzngs
    finally:
        musicbrainzngs.set_format("xml")
        musicbrainzngs.set_rate_limit(1.0, 1)
        musicbrainzngs.set_hostname("musicbrainz.org", use_https=True)

