"""The enrich capability's ``harbord doctor`` checks: which providers have what they need."""

from __future__ import annotations

from collections.abc import Iterator

from handlers.enrich.config import api_key, enrich_config
from harbord.config import Config
from harbord.doctor import Check


def checks(config: Config) -> Iterator[Check]:
    """A warning for each provider without a key (it is skipped; ingestion is unaffected),
    nothing when enrichment is off or not in the chain. No request is made."""
    cfg = enrich_config(config)
    if not cfg.enabled or "enrich" not in config.pipeline.handlers:
        yield ("enrichment", "ok", "off")
        return
    for name, section in (("tmdb", cfg.tmdb), ("omdb", cfg.omdb)):
        if api_key(section.api_key, name):
            yield (f"enrich {name}", "ok", f"key set; {section.base_url}")
        else:
            yield (f"enrich {name}", "warn", f"no API key ([enrich.{name}] api_key, "
                                             f"$HARBORD_{name.upper()}_API_KEY or the credential "
                                             f"{name}_api_key): {name} is skipped")
    mb = cfg.musicbrainz
    where = f"{'https' if mb.https else 'http'}://{mb.host}"
    yield ("enrich musicbrainz", "ok", where if mb.enabled else "off")
