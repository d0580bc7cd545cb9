"""``harbord search`` and ``harbord reindex`` (click commands; the group adds them).

``search`` runs in its own process and only reads: the index the daemon last saved, the
vectors committed since (found exactly), SQLite for the id map and the items. It never takes
the daemon's writer lock, so ingestion goes on while people search.

``reindex`` rebuilds a space's hnswlib index from its vector store and commits it atomically.
It takes the space's writer lock, so it refuses to run while the daemon holds it (the daemon
itself checks the saved index at start and repairs or rebuilds it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from handlers.search.config import embed_config, index_config
from handlers.search.reader import SEARCH_TYPES, Hit
from harbord.cli.common import fail
from harbord.config import Config
from harbord.errors import HarbordError, NoVectorError


def _print_hits(hits: list[Hit], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([h.to_dict() for h in hits], ensure_ascii=False))
        return
    if not hits:
        click.echo("no results")
        return
    table = Table(show_edge=False, header_style="bold")
    for name, justify in [("#", "right"), ("score", "right"), ("title", "left"), ("type", "left"),
                          ("year", "right"), ("path", "left")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for rank, hit in enumerate(hits, 1):
        table.add_row(str(rank), f"{hit.score:.3f}", hit.title or "?", hit.media_type or "",
                      str(hit.year or ""), hit.path or "")
    Console(soft_wrap=True).print(table)


def run_search(config: Config, query: str | None, *, k: int = 10, media_type: str | None = None,
               like: int | None = None) -> list[Hit]:
    """Search the configured space; the logic behind ``harbord search``.

    Exactly one of ``query`` (text, embedded with the configured backend) and ``like`` (an
    item id whose stored vector is the query; the item itself is left out) is used. Returns
    ``[]`` for an empty or missing index. Raises NoVectorError when ``like`` names an item
    without a vector, other HarbordError subclasses for config/catalog/model problems.
    """
    from handlers.search.ann import ann_params
    from handlers.search.embedders import load_embedder, space_info
    from harbord.catalog import open_db

    if not config.db_path.exists():
        return []
    info = space_info(embed_config(config))
    db = open_db(config.db_path)
    try:
        from handlers.search.reader import SpaceReader

        params = ann_params(index_config(config))
        reader = SpaceReader(config.paths.state, db, info.space, params)
        if like is not None:
            vector = reader.vector_of(like)
            if vector is None:
                raise NoVectorError(f"item {like} has no vector in space {info.space}")
            return reader.search(vector, k, media_type=media_type, exclude_item=like)
        if reader.dim is None:
            return []
        embedder = load_embedder(embed_config(config))
        vector = embedder.embed_texts([query or ""])[0]
        return reader.search(vector, k, media_type=media_type)
    finally:
        db.conn.close()


@click.command("search")
@click.argument("query", required=False)
@click.option("--type", "media_type", type=click.Choice(SEARCH_TYPES),
              help="Only this kind of item; 'series' = TV episodes, best one per show.")
@click.option("-k", "k", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Number of results.")
@click.option("--json", "as_json", is_flag=True,
              help='JSON list of {"item_id", "score", "title", "media_type", "year", "path"}.')
@click.option("--like", "like", type=int, metavar="ITEM_ID",
              help="Find the items nearest to this item instead of a text query.")
@click.pass_obj
def search(config: Config, query: str | None, media_type: str | None, k: int, as_json: bool,
           like: int | None) -> None:
    """Find items by meaning: harbord search "robot alone on a deserted Earth"."""
    if (query is None) == (like is None):
        raise click.UsageError("give a QUERY or --like ITEM_ID (one of them)")
    try:
        hits = run_search(config, query, k=k, media_type=media_type, like=like)
    except NoVectorError as err:
        fail(str(err), 1)
    except HarbordError as err:
        fail(str(err))
    _print_hits(hits, as_json)


@click.command("reindex")
@click.option("--space", "spaces", multiple=True, metavar="NAME",
              help="Space to rebuild (repeatable); default: every space under <paths.state>/vectors.")
@click.pass_obj
def reindex(config: Config, spaces: tuple[str, ...]) -> None:
    """Rebuild the ANN index of each embedding space from its vector store (daemon stopped)."""
    from handlers.search.ann import ann_params
    from handlers.search.vectors import VectorSpace, VectorStore, iter_spaces, space_dir
    from harbord.errors import SpaceBusyError

    folders = [space_dir(config.paths.state, s) for s in spaces] or list(iter_spaces(config.paths.state))
    if not folders:
        click.echo("no vector spaces yet")
        return
    params = ann_params(index_config(config))
    for folder in folders:
        try:
            store = VectorStore.open(folder, space=folder.name, model_id="", dim=None, writable=False)
            space = VectorSpace.open(config.paths.state, Path(config.db_path), space=store.space,
                                     model_id=store.model_id, dim=store.dim, params=params, load=False)
        except SpaceBusyError as err:
            fail(f"{err}; stop the daemon first (it checks and repairs the index when it starts)", 1)
        except HarbordError as err:
            fail(f"{folder.name}: {err}")
        started = time.perf_counter()
        try:
            count = space.rebuild(reason="reindex")
        finally:
            space.close(save=False)
        click.echo(f"{space.space}: {count} vectors indexed in {time.perf_counter() - started:.2f} s")
