"""The embed step: MiniLM backend, item text, handler idempotency and the re-embed hook."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from handlers.search.batching import Batcher
from handlers.search.config import EmbedConfig
from handlers.search.embed import Embed
from handlers.search.embedders import Embedder, load_embedder
from handlers.search.index import Index
from handlers.search.item_text import build_item_text, item_text
from handlers.search.reader import SpaceReader
from handlers.search.service import reembed_item
from harbord.catalog import Catalog, open_db
from harbord.config import Config, PathsConfig
from harbord.context import Context
from harbord.errors import PermanentError
from harbord.job import Job
from tests.support.fixtures import FIXTURES
from tests.support.waits import async_wait_until

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def minilm() -> Embedder:
    """The packaged MiniLM model, loaded once per test session (cached per process)."""
    return load_embedder(EmbedConfig())


def _fixture(*parts: str) -> Any:
    return json.loads(FIXTURES.joinpath(*parts).read_text(encoding="utf-8"))


def add_item(catalog: Catalog, n: int, **fields: Any) -> Job:
    """Catalogue one item (object row + item row) and return its job with ``item_id`` set."""
    file_hash = f"{n:064x}"
    catalog.add_object(file_hash, 100 + n, ".mkv", f"/library/{file_hash[:2]}/{file_hash}.mkv")
    job = Job(id=f"{n:032x}", path=f"/inbox/item{n}.mkv", file_hash=file_hash, **fields)
    return dataclasses.replace(job, item_id=catalog.upsert_item(job))


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[Context]:
    config = Config(paths=PathsConfig(state=tmp_path / "state", library=tmp_path / "library"))
    db = open_db(tmp_path / "h.db")
    context = Context(config=config, db=db, catalog=Catalog(db))
    yield context
    await context.aclose()


# --- backend -----------------------------------------------------------------------------------

def test_minilm_vectors_are_unit_float32_and_semantic(minilm: Embedder) -> None:
    texts = ["A puppy plays fetch in the park", "A young dog chases a ball on the grass",
             "Quarterly earnings beat analyst expectations"]
    vectors = minilm.embed_texts(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    again = minilm.embed_texts([texts[0]])
    np.testing.assert_allclose(again[0], vectors[0], atol=1e-5)
    assert minilm.embed_texts([]).shape == (0, 384)
    assert (minilm.space, minilm.dim) == ("all-minilm-l6-v2", 384)


def test_importing_handlers_loads_no_model() -> None:
    code = ("import sys, handlers.search.embed, handlers.search.index, handlers.search.embedders, "
            "handlers.search.service; "
            "print(sorted(m for m in ('torch', 'sentence_transformers', 'imagebind') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# --- item text ---------------------------------------------------------------------------------

def test_item_text_uses_tmdb_details_and_credits() -> None:
    details = _fixture("tmdb", "jdrouet_tmdb-api", "movie-details.json")
    credits = _fixture("tmdb", "jdrouet_tmdb-api", "movie-credits.json")
    text = build_item_text(title="Fight Club", year=1999, media_type="movie",
                           enrichment={"tmdb": {**details, "cast": credits["cast"]}})
    assert text.startswith("Fight Club (1999). Movie. ")
    assert details["overview"][:60] in text
    assert "Genres: Drama" in text
    assert "Cast: Edward Norton, Brad Pitt" in text
    assert text.index("Fight Club") < text.index(details["overview"][:30]) < text.index("Genres")


def test_item_text_uses_omdb_strings() -> None:
    omdb = _fixture("omdb", "by_title_fopp_cache", "black_panther.json")
    text = build_item_text(title="Black Panther", media_type="movie", enrichment={"omdb": omdb})
    assert "(2018)" in text and "T'Challa" in text
    assert "Genres: Action, Adventure, Sci-Fi" in text
    assert "Chadwick Boseman" in text


def test_item_text_uses_ytdlp_source_meta_and_episode_and_exif() -> None:
    info = _fixture("ytdlp", "ytdl-nfo", "L_jWHffIx5E_smash_mouth_all_star.info.json")
    video = build_item_text(media_type="video", parsed={"title": "L_jWHffIx5E", "source_meta": info})
    assert video.startswith("L_jWHffIx5E. Video. ")
    assert "Music video by Smash Mouth" in video
    assert "Genres: Music" in video and "By SmashMouthVEVO" in video
    assert "smash mouth" in video and "Date 2009-12-25" in video
    episode = build_item_text(title="Game of Thrones", media_type="episode",
                              parsed={"season": 1, "episode": 3},
                              series={"title": "Game of Thrones", "episode_title": "Lord Snow"})
    assert episode == 'Game of Thrones. TV episode season 1 episode 3 "Lord Snow".'
    photo = build_item_text(title="IMG_0042", media_type="photo",
                            probe={"exif": {"DateTimeOriginal": "2023:07:14 18:02:11"}, "place": "Lisbon"})
    assert photo == "IMG_0042. Photo. Taken 2023-07-14 18:02:11. Place: Lisbon."


def test_item_text_of_catalog_row_prefers_user_title(tmp_path: Path) -> None:
    catalog = Catalog(open_db(tmp_path / "h.db"))
    job = add_item(catalog, 1, media_type="movie", parsed={"title": "fight club", "year": 1999})
    assert job.item_id is not None
    catalog.update_item(job.item_id, {"title": "Fight Club (Director's Cut)"}, user=True)
    item = catalog.get_item(job.item_id)
    assert item is not None
    assert item_text(item).startswith("Fight Club (Director's Cut) (1999). Movie.")


# --- batching ----------------------------------------------------------------------------------

async def test_batcher_runs_concurrent_submissions_as_one_call() -> None:
    calls: list[list[int]] = []

    async def double(batch: list[int]) -> list[int]:
        calls.append(batch)
        return [2 * x for x in batch]

    batcher: Batcher[int, int] = Batcher(double, max_batch=8, max_wait=0.05)
    results = await asyncio.gather(*[batcher.submit(i) for i in range(12)])
    assert results == [2 * i for i in range(12)]
    assert [len(c) for c in calls] == [8, 4]

    async def broken(batch: list[int]) -> list[int]:
        raise ValueError("model exploded")

    failing: Batcher[int, int] = Batcher(broken)
    with pytest.raises(ValueError, match="exploded"):
        await failing.submit(1)


# --- the handler -------------------------------------------------------------------------------

async def test_embed_and_index_twice_keeps_one_live_vector(ctx: Context, minilm: Embedder) -> None:
    job = add_item(ctx.catalog, 1, media_type="movie", parsed={"title": "WALL·E", "year": 2008},
                   enrichment={"overview": "A small waste-collecting robot is left alone on Earth."})
    embed, index = Embed.from_context(ctx), Index.from_context(ctx)
    first = await index.handle(await embed.handle(job))
    assert first.vectors == {"all-minilm-l6-v2": 0}
    space = await embed.service.space()
    rows = space.store.rows
    second = await index.handle(await embed.handle(job))  # a re-run after a crash
    assert second.vectors == first.vectors
    assert space.store.rows == rows  # nothing re-embedded or appended
    live = list(ctx.db.query("SELECT vector_id FROM vectors WHERE deleted = 0"))
    assert live == [{"vector_id": 0}]
    assert ctx.db.execute("SELECT count(*) FROM vectors_staged").fetchone()[0] == 0


async def test_rerun_after_staging_does_not_add_a_second_vector(ctx: Context, minilm: Embedder) -> None:
    job = add_item(ctx.catalog, 2, media_type="movie", parsed={"title": "Her", "year": 2013})
    embed, index = Embed.from_context(ctx), Index.from_context(ctx)
    staged = await embed.handle(job)
    await index.handle(staged)
    service = embed.service
    space = await service.space()
    # Same vector staged again under a new id (as if the input hash had changed): the index
    # step sees the equal vector hash and keeps the live one.
    vector = space.store.get([staged.vectors[space.space]])
    assert job.item_id is not None
    again = await asyncio.to_thread(space.stage, job.item_id, vector, ["other-input"])
    done = await index.handle(dataclasses.replace(staged, vectors={space.space: again[0].vector_id}))
    assert done.vectors == staged.vectors
    assert ctx.db.execute("SELECT count(*) FROM vectors").fetchone()[0] == 1


async def test_reembed_replaces_the_vector(ctx: Context, minilm: Embedder) -> None:
    job = add_item(ctx.catalog, 3, media_type="movie", parsed={"title": "Psycho", "year": 1960})
    embed, index = Embed.from_context(ctx), Index.from_context(ctx)
    before = (await index.handle(await embed.handle(job))).vectors["all-minilm-l6-v2"]
    assert job.item_id is not None
    overview = ("When larcenous real estate clerk Marion Crane goes on the lam with a wad of cash, "
                "she ends up at the notorious Bates Motel.")
    ctx.catalog.update_item(job.item_id, {"enrichment": {"overview": overview}})
    after = await reembed_item(ctx, job.item_id)
    assert after["all-minilm-l6-v2"] != before
    live = list(ctx.db.query("SELECT vector_id, deleted FROM vectors WHERE item_id = ? ORDER BY seq",
                             [job.item_id]))
    new = after["all-minilm-l6-v2"]
    assert live == [{"vector_id": before, "deleted": 1}, {"vector_id": new, "deleted": 0}]
    assert await reembed_item(ctx, job.item_id) == after  # unchanged text: kept
    await ctx.aclose()
    reader = SpaceReader(ctx.config.paths.state, ctx.db, "all-minilm-l6-v2")
    query = minilm.embed_texts(["thief hides at a creepy motel run by a strange young man"])[0]
    hits = reader.search(query, 5)
    assert [h.item_id for h in hits] == [job.item_id]  # once, with its new vector


async def test_embed_without_catalog_item_fails_permanently(ctx: Context) -> None:
    with pytest.raises(PermanentError, match="store"):
        await Embed.from_context(ctx).handle(Job(id="f" * 32, path="/inbox/x.mkv"))


async def test_index_passes_through_a_job_without_vectors(ctx: Context) -> None:
    job = Job(id="e" * 32, path="/inbox/x.mkv", item_id=None)
    assert await Index.from_context(ctx).handle(job) is job


async def test_the_index_is_saved_on_a_cadence_and_at_close(tmp_path: Path, minilm: Embedder) -> None:
    from handlers.search.ann import read_meta
    from handlers.search.config import IndexConfig

    config = Config(paths=PathsConfig(state=tmp_path / "state", library=tmp_path / "library"),
                    index=IndexConfig(save_every_seconds=0.2))
    db = open_db(tmp_path / "h.db")
    ctx = Context(config=config, db=db, catalog=Catalog(db))
    embed, index = Embed.from_context(ctx), Index.from_context(ctx)
    folder = config.paths.state / "vectors" / "all-minilm-l6-v2"
    await index.handle(await embed.handle(add_item(ctx.catalog, 7, parsed={"title": "Taken"})))
    assert (read_meta(folder) or {}).get("applied_seq") == 0  # saved empty when the space opened
    # the cadence (0.2 s) saves the new vector without any further call
    await async_wait_until(lambda: (read_meta(folder) or {}).get("applied_seq") == 1, 5,
                           what="the cadence's save")
    await index.handle(await embed.handle(add_item(ctx.catalog, 8, parsed={"title": "Her"})))
    await ctx.aclose()  # shutdown saves at once
    assert (read_meta(folder) or {}).get("applied_seq") == 2
