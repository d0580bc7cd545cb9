"""The enrich capability's config section ``[enrich]`` with ``[enrich.tmdb]``, ``[enrich.omdb]``
and ``[enrich.musicbrainz]`` (documented in ``etc/harbord.toml``).

API keys come from the config, else an environment variable (``HARBORD_TMDB_API_KEY``,
``HARBORD_OMDB_API_KEY``), else a systemd credential (``LoadCredential=tmdb_api_key:...``,
read from ``$CREDENTIALS_DIRECTORY/tmdb_api_key``; systemd.exec(5), "Credentials"). They are
``SecretStr``: never logged, and ``check-config`` prints them as ``**********``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr

from harbord.capability import Section

if TYPE_CHECKING:
    from harbord.config import CoreConfig


class TmdbConfig(Section):
    """``[enrich.tmdb]``: The Movie Database, API v3 (https://developer.themoviedb.org/docs)."""

    api_key: SecretStr = SecretStr("")
    """Empty: ``$HARBORD_TMDB_API_KEY``, else the systemd credential ``tmdb_api_key``, else
    TMDb is skipped."""
    base_url: str = "https://api.themoviedb.org/3"
    language: str = "en-US"
    requests_per_second: float = Field(default=40.0, gt=0)
    """TMDb's documented ceiling is ~50 requests/s per IP (developer.themoviedb.org, "Rate Limiting")."""


class OmdbConfig(Section):
    """``[enrich.omdb]``: the Open Movie Database (https://www.omdbapi.com/)."""

    api_key: SecretStr = SecretStr("")
    """Empty: ``$HARBORD_OMDB_API_KEY``, else the systemd credential ``omdb_api_key``, else
    OMDb is skipped."""
    base_url: str = "http://www.omdbapi.com"
    daily_budget: int = Field(default=1000, ge=0)
    """Requests per UTC day (OMDb's free key allows 1,000); counted in the catalog, so a
    restart keeps the count."""


class MusicBrainzConfig(Section):
    """``[enrich.musicbrainz]``: MusicBrainz web service v2 (https://musicbrainz.org/doc/MusicBrainz_API),
    at most 1 request/s (https://musicbrainz.org/doc/MusicBrainz_API/Rate_Limiting)."""

    enabled: bool = True
    host: str = "musicbrainz.org"
    """``host[:port]``."""
    https: bool = True
    contact: str = ""
    """An e-mail or URL for the User-Agent (``harbord/<version> ( <contact> )``): MusicBrainz
    asks every client to name a way to reach its operator
    (https://musicbrainz.org/doc/MusicBrainz_API/Rate_Limiting#Provide_meaningful_User-Agent_strings)."""


class EnrichConfig(Section):
    """``[enrich]``: metadata enrichment after ``store``; never in the way of ingestion."""

    enabled: bool = True
    timeout_seconds: float = Field(default=10.0, gt=0)
    """Per request; the ``enrich`` step never waits longer than this per provider call."""
    cache_ttl_days: float = Field(default=30.0, gt=0)
    """How long a provider's answer is reused."""
    negative_ttl_days: float = Field(default=1.0, gt=0)
    """How long a "not found" answer is reused."""
    retry_base_seconds: float = Field(default=60.0, gt=0)
    """First wait before pending enrichment is tried again; doubles each time, up to 6 hours
    (a provider's ``Retry-After`` wins when longer)."""
    tmdb: TmdbConfig = Field(default_factory=TmdbConfig)
    omdb: OmdbConfig = Field(default_factory=OmdbConfig)
    musicbrainz: MusicBrainzConfig = Field(default_factory=MusicBrainzConfig)


def enrich_config(config: CoreConfig) -> EnrichConfig:
    """The ``[enrich]`` section of a loaded config."""
    return config.section("enrich", EnrichConfig)


def api_key(configured: SecretStr, provider: str) -> str | None:
    """The API key of ``provider`` (``"tmdb"``, ``"omdb"``): the configured one, else
    ``$HARBORD_<PROVIDER>_API_KEY``, else the systemd credential ``<provider>_api_key``; None
    when there is none (the provider is then skipped)."""
    key = configured.get_secret_value().strip()
    if key:
        return key
    key = os.environ.get(f"HARBORD_{provider.upper()}_API_KEY", "").strip()
    if key:
        return key
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds:
        try:
            key = (Path(creds) / f"{provider}_api_key").read_text(encoding="utf-8").strip()
        except OSError:
            key = ""
    return key or None
