"""The ``enrich`` capability: metadata from TMDb, OMDb and MusicBrainz (the enrichment issue).

For now it contributes only the item text read from the ``items.enrichment`` column
(:mod:`.text`); its steps, providers, cache and rate limits come with the enrichment issue.
"""

from __future__ import annotations

from handlers.enrich.config import EnrichConfig
from handlers.enrich.schema import MIGRATIONS
from harbord.capability import Capability

CAPABILITY = Capability(
    name="enrich",
    config={"enrich": EnrichConfig},
    migrations=MIGRATIONS,
    text=("handlers.enrich.text:facts",),
)
