"""The ``enrich`` capability: metadata from TMDb, OMDb and MusicBrainz (the enrichment issue).

The step ``enrich`` (:mod:`.step`) after ``store``; the service that alone talks to the
providers (:mod:`.service`: providers in :mod:`.providers`, the response cache and budgets in
:mod:`.cache`, identification in :mod:`.ids` and :mod:`.match`, the stored shape in
:mod:`.shape`); the background task finishing pending enrichment; the ``[enrich]`` config
section; its tables (:mod:`.schema`); the item text read from ``items.enrichment``
(:mod:`.text`).
"""

from __future__ import annotations

from handlers.enrich.config import EnrichConfig
from handlers.enrich.schema import MIGRATIONS
from harbord.capability import Capability, Step

CAPABILITY = Capability(
    name="enrich",
    steps=(Step("enrich", "handlers.enrich.step:Enrich"),),
    config={"enrich": EnrichConfig},
    migrations=MIGRATIONS,
    text=("handlers.enrich.text:facts",),
    tasks=("handlers.enrich.service:background",),
    commands=("handlers.enrich.commands:enrich", "handlers.enrich.commands:match",
              "handlers.enrich.commands:edit", "handlers.enrich.commands:soundtrack"),
    doctor=("handlers.enrich.doctor:checks",),
)
