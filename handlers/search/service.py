"""The daemon-side semantic index service shared by the ``embed`` and ``index`` handlers.

One :class:`SemanticIndex` per process (``ctx.shared("semantic", ...)``, closed at shutdown):
it owns the embedder (loaded once, lazily), the writer of the configured embedding space
(:class:`handlers.search.vectors.VectorSpace`), two micro-batchers (embedding, commit) and the save
cadence (``[index] save_every_seconds``, plus a final save at close). Every blocking call
(model forward pass, fsync, SQLite on the space's own connection, hnswlib) runs in a worker
thread through :func:`harbord.offload.io`; the event loop never waits on them.

Re-embedding hook for the enrichment step: :func:`reembed_item` (or
:meth:`SemanticIndex.reembed_item`) rebuilds the item's text from the catalog row, embeds it
and *replaces* the item's vector (same item, one live vector), skipping the work when the
text did not change.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3
import numpy as np
import structlog
from sqlite_utils import Database

from handlers.search.ann import ann_params
from handlers.search.batching import Batcher
from handlers.search.config import embed_config, index_config
from handlers.search.embedders import Embedder, Vectors, load_embedder, media_kind
from handlers.search.item_text import item_text
from handlers.search.vectors import VectorSpace
from harbord import offload
from harbord.catalog import Catalog
from harbord.config import Config
from harbord.errors import EmbeddingError, UnknownItemError

if TYPE_CHECKING:
    from harbord.context import Context

log = structlog.get_logger(__name__)

SHARED_KEY = "semantic"


@dataclass(frozen=True)
class EmbedInput:
    """What to embed for one item: ``kind`` is ``text`` (``text`` is used) or a media
    modality ``image``/``audio``/``video`` (``path`` is used, ``text`` is the fallback)."""

    item_id: int
    kind: str
    text: str
    path: str | None = None


def input_hash(model_id: str, inp: EmbedInput) -> str:
    """BLAKE3 hex identifying what was embedded (model, kind, text or media path)."""
    what = inp.text if inp.kind == "text" else str(inp.path)
    return str(blake3.blake3(f"{model_id}\0{inp.kind}\0{what}".encode()).hexdigest())


def media_path(item: dict[str, Any]) -> str | None:
    """The stored object's path of a catalog item, else its latest file path, if it exists."""
    obj = item.get("object") or {}
    candidates = [obj.get("path")] + [f.get("path") for f in reversed(item.get("files") or [])]
    for path in candidates:
        if path and Path(path).is_file():
            return str(path)
    return None


def choose_input(item: dict[str, Any], embedder: Embedder) -> EmbedInput:
    """The input for a catalog item (as :meth:`Catalog.get_item` returns it).

    Text-only backends get the item text (:func:`handlers.search.item_text.item_text`). A backend
    that embeds media gets the item's file when its modality fits (photo -> image, music ->
    audio, movie/episode/video -> video frames), else the text.
    """
    text = item_text(item)
    path = media_path(item)
    if path is not None:
        kind = media_kind(path, item.get("media_type"))
        if kind is not None and kind in embedder.modalities:
            return EmbedInput(int(item["id"]), kind, text, path)
    return EmbedInput(int(item["id"]), "text", text)


def embed_inputs(embedder: Embedder, inputs: list[EmbedInput]) -> Vectors:
    """Embed a batch of inputs (blocking): one call per modality; a media file the backend
    cannot read falls back to its text. Returns ``(len(inputs), dim)`` float32 unit rows."""
    out = np.zeros((len(inputs), embedder.dim), dtype=np.float32)
    methods = {"image": "embed_images", "audio": "embed_audio", "video": "embed_video"}
    texts: list[int] = []
    for kind, method in methods.items():
        positions = [i for i, inp in enumerate(inputs) if inp.kind == kind]
        if not positions:
            continue
        fn = getattr(embedder, method)
        try:
            out[positions] = fn([inputs[i].path for i in positions])
        except EmbeddingError:
            for i in positions:  # find the bad file(s); the rest keep their media vectors
                try:
                    out[i] = fn([inputs[i].path])[0]
                except EmbeddingError as err:
                    log.warning("media embedding failed; using text", path=inputs[i].path, error=str(err))
                    texts.append(i)
    texts += [i for i, inp in enumerate(inputs) if inp.kind == "text"]
    if texts:
        out[texts] = embedder.embed_texts([inputs[i].text for i in texts])
    return out


class SemanticIndex:
    """See the module docstring. ``embedder`` may be given (tests); otherwise it is loaded
    from the ``[embed]`` section on first use. ``db`` is the catalog (the space reopens its file on a
    private connection; the catalog is read on the caller's thread)."""

    def __init__(self, config: Config, db: Database, embedder: Embedder | None = None) -> None:
        self.config = config
        self.db = db
        self.catalog = Catalog(db)
        self._embedder = embedder
        self._space: VectorSpace | None = None
        self._open_lock = asyncio.Lock()
        self._embed_batcher: Batcher[EmbedInput, Any] = Batcher(
            self._embed_batch, max_batch=embed_config(config).batch_size, max_wait=0.01)
        self._commit_batcher: Batcher[tuple[int, int], int | None] = Batcher(
            self._commit_batch, max_batch=256, max_wait=0.005)
        self._saver: asyncio.Task[None] | None = None
        self._closed = False

    # lazy resources ------------------------------------------------------------------------
    async def embedder(self) -> Embedder:
        """The embedder, loaded in a worker thread on first use."""
        if self._embedder is None:
            async with self._open_lock:
                if self._embedder is None:
                    self._embedder = await offload.io(load_embedder, embed_config(self.config))
        return self._embedder

    async def space(self) -> VectorSpace:
        """The writer of the embedder's space, opened (and repaired) on first use; starts the
        save cadence."""
        if self._space is None:
            embedder = await self.embedder()
            async with self._open_lock:
                if self._space is None:
                    if self._closed:
                        raise RuntimeError("semantic index is closed")
                    params = ann_params(index_config(self.config))
                    self._space = await offload.io(
                        lambda: VectorSpace.open(self.config.paths.state, self.db,
                                                 space=embedder.space, model_id=embedder.model_id,
                                                 dim=embedder.dim, params=params))
                    self._saver = asyncio.get_running_loop().create_task(self._save_loop())
        return self._space

    # batches -------------------------------------------------------------------------------
    async def _embed_batch(self, inputs: list[EmbedInput]) -> list[Any]:
        embedder = await self.embedder()
        vectors = await offload.io(embed_inputs, embedder, inputs)
        return list(vectors)

    async def _commit_batch(self, requests: list[tuple[int, int]]) -> list[int | None]:
        space = await self.space()
        return await offload.io(space.commit, requests)

    async def _save_loop(self) -> None:
        interval = index_config(self.config).save_every_seconds
        while True:
            await asyncio.sleep(interval)
            space = self._space
            if space is None:
                continue
            try:
                await offload.io(space.save)
            except OSError as err:  # disk full: keep the previous save, try again next time
                log.error("vector index save failed", space=space.space, error=str(err))

    # the two steps -------------------------------------------------------------------------
    async def embed_and_stage(self, inp: EmbedInput) -> int:
        """Embed ``inp`` and append it to the store as staged; returns the vector id.

        When the item's live vector was made from the same input (same model, kind and
        text/path) nothing is embedded and the live id is returned, so re-running is free.
        """
        embedder = await self.embedder()
        space = await self.space()
        ih = input_hash(embedder.model_id, inp)
        live = await offload.io(space.live, inp.item_id)
        if live is not None and live["input_hash"] == ih:
            return int(live["vector_id"])
        vector = await self._embed_batcher.submit(inp)
        if not np.isfinite(vector).all() or float(np.linalg.norm(vector)) < 0.5:
            raise EmbeddingError(f"item {inp.item_id}: the model returned an unusable vector")
        staged = await offload.io(space.stage, inp.item_id, vector.reshape(1, -1), [ih], inp.kind)
        return staged[0].vector_id

    async def commit(self, item_id: int, vector_id: int) -> int | None:
        """Make the vector the item's live one (batched); returns the live id (see
        :meth:`VectorSpace.commit`)."""
        return await self._commit_batcher.submit((item_id, vector_id))

    async def input_for_item(self, item_id: int) -> EmbedInput:
        """The embedding input for a catalog item. Raises UnknownItemError when the item is
        unknown."""
        item = self.catalog.get_item(item_id)
        if item is None:
            raise UnknownItemError(f"no item {item_id}")
        return choose_input(item, await self.embedder())

    async def reembed_item(self, item_id: int) -> dict[str, int]:
        """Re-embed an item from its catalog row and replace its vector.

        Returns ``{space: live vector id}``. Idempotent: an unchanged text keeps the vector.
        Raises UnknownItemError for an unknown item, EmbeddingError when the model fails.
        """
        space = await self.space()
        inp = await self.input_for_item(item_id)
        vector_id = await self.embed_and_stage(inp)
        live = await self.commit(item_id, vector_id)
        return {space.space: live} if live is not None else {}

    async def save(self) -> bool:
        """Save the index now if it changed; returns True if it wrote."""
        if self._space is None:
            return False
        return await offload.io(self._space.save)

    async def aclose(self) -> None:
        """Finish queued work, stop the save cadence, save and release the space."""
        self._closed = True
        await self._embed_batcher.drain()
        await self._commit_batcher.drain()
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
        if self._space is not None:
            await offload.io(self._space.close)
            self._space = None


def semantic_service(ctx: Context) -> SemanticIndex:
    """The process's :class:`SemanticIndex`, created on first call and closed by
    ``ctx.aclose()``."""
    return ctx.shared(SHARED_KEY, lambda: SemanticIndex(ctx.config, ctx.db),
                      close=lambda service: service.aclose())


async def reembed_item(ctx: Context, item_id: int) -> dict[str, int]:
    """Hook for the enrichment step: after adding text to item ``item_id`` in the catalog,
    call this to replace its vector. Returns ``{space: vector id}``; see
    :meth:`SemanticIndex.reembed_item` for errors."""
    return await semantic_service(ctx).reembed_item(item_id)
