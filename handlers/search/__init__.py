"""The ``search`` capability: embeddings, the vector store, the hnswlib ANN index, ``harbord search``.

Steps ``embed`` (:mod:`.embed`) and ``index`` (:mod:`.index`), both thin glue around the one
object that talks to the model and the index, the semantic index service (:mod:`.service`);
:mod:`.vectors` (append-only vector store + id map), :mod:`.ann` (hnswlib), :mod:`.reader`
(the read side ``harbord search`` uses), :mod:`.embedders` (MiniLM, ImageBind),
:mod:`.item_text` (the text embedded, composed from every capability's contributions), its
config sections ``[embed]`` and ``[index]`` (:mod:`.config`), its tables (:mod:`.schema`), the
commands ``search`` and ``reindex`` (:mod:`.commands`) and the embedding doctor check.
"""

from __future__ import annotations

from handlers.search.config import EmbedConfig, IndexConfig
from handlers.search.schema import MIGRATIONS
from harbord.capability import Capability, Step

CAPABILITY = Capability(
    name="search",
    steps=(
        Step("embed", "handlers.search.embed:Embed"),
        Step("index", "handlers.search.index:Index"),
    ),
    config={"embed": EmbedConfig, "index": IndexConfig},
    migrations=MIGRATIONS,
    commands=("handlers.search.commands:search", "handlers.search.commands:reindex"),
    doctor=("handlers.search.doctor:checks",),
    subscribers=("handlers.search.subscriber:subscriber",),
)
