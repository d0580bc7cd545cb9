"""The search capability's config sections, ``[embed]`` and ``[index]`` (``etc/harbord.toml``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from harbord.capability import Section

if TYPE_CHECKING:
    from harbord.config import CoreConfig


class EmbedConfig(Section):
    """``[embed]``: the embedding backend (see the README's search section)."""

    backend: Literal["minilm", "imagebind"] = "minilm"
    checkpoint: Path | None = None
    """ImageBind only: path of the weights file the user provides (never downloaded)."""
    device: Literal["cpu", "cuda"] = "cpu"
    batch_size: int = Field(default=64, ge=1)


class IndexConfig(Section):
    """``[index]``: hnswlib ANN index parameters (https://github.com/nmslib/hnswlib, ALGO_PARAMS.md)."""

    m: int = Field(default=16, ge=4, le=128)
    ef_construction: int = Field(default=200, ge=10)
    ef_search: int = Field(default=64, ge=10)
    save_every_seconds: float = Field(default=30.0, gt=0)
    """Seconds between atomic saves of the index (and at shutdown)."""


def embed_config(config: CoreConfig) -> EmbedConfig:
    """The ``[embed]`` section of a loaded config."""
    return config.section("embed", EmbedConfig)


def index_config(config: CoreConfig) -> IndexConfig:
    """The ``[index]`` section of a loaded config."""
    return config.section("index", IndexConfig)
