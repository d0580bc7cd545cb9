"""The enrich service and step on a real catalog, with the real client libraries against the
replay server of recorded TMDb/OMDb/MusicBrainz responses (tests/support/replay.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from handlers.enrich.service import EnrichService
from handlers.enrich.step import Enrich
from harbord.catalog import Catalog, open_db
from harbord.config import Config
from harbord.context import Context
from harbord.events import ListSink
from harbord.job import Job
from tests.enrich.conftest import OMDB_KEY, TMDB_KEY
from tests.support.replay import ReplayServer


def _config(tmp_path: Path, replay: ReplayServer, **enrich: Any) -> Config:
    section: dict[str, Any] = {
        "timeout_seconds": 2.0,
        "tmdb": {"api_key": TMDB_KEY, "base_url": replay.tmdb_base},
        "omdb": {"api_key": OMDB_KEY, "base_url": replay.omdb_url},
        "musicbrainz": {"host": replay.musicbrainz_host, "https": False},
    }
    for key, value in enrich.items():
        if isinstance(value, dict):
            section[key] = {**section.get(key, {}), **value}
        else:
            section[key] = value
    return Config.model_validate({
        "paths": {"state": str(tmp_path / "state"), "library": str(tmp_path / "library")},
        "watch": [{"path": str(tmp_path / "inbox")}],
        "mqtt": {"enabled": False},
        "pipeline": {"handlers": ["parse", "probe", "checksum", "store", "enrich"]},
        "enrich": section,
    })


@pytest.fixture
async def make_ctx(tmp_path: Path, replay: ReplayServer) -> AsyncIterator[Any]:
    made: list[Context] = []

    def make(**enrich: Any) -> Context:
        config = _config(tmp_path, replay, **enrich)
        (tmp_path / "library" / "objects").mkdir(parents=True, exist_ok=True)
        db = open_db(tmp_path / "h.db")
        ctx = Context(config=config, db=db, catalog=Catalog(db), events=ListSink())
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        await ctx.aclose()
        ctx.db.close()


_counter = iter(range(1, 10_000))


def add_item(ctx: Context, name: str, *, media_type: str = "movie", **parsed: Any) -> int:
    """Catalogue ``name`` as a stored item (object file in the library, item and files rows)."""
    n = next(_counter)
    digest = f"{n:064x}"
    obj = ctx.config.paths.library / "objects" / digest[:2] / f"{digest}.mkv"
    obj.parent.mkdir(parents=True, exist_ok=True)
    obj.write_bytes(b"x" * 10)
    ctx.catalog.add_object(digest, 10, "mkv", str(obj))
    job = Job(id=f"{n:032x}", path=f"/inbox/{name}", file_hash=digest, media_type=media_type,
              parsed=parsed)
    item_id = ctx.catalog.upsert_item(job)
    ctx.catalog.add_file(dataclasses.replace(job, size=10, mtime=1.0), item_id, present=False)
    return item_id


def enrichment(ctx: Context, item_id: int) -> dict[str, Any]:
    item = ctx.catalog.get_item(item_id)
    assert item is not None
    return dict(item["enrichment"])


async def test_a_movie_is_fully_enriched(make_ctx: Any, replay: ReplayServer) -> None:
    ctx = make_ctx()
    item = add_item(ctx, "The.Matrix.1999.1080p.mkv", title="The Matrix", year=1999)
    outcome = await EnrichService(ctx).enrich_item(item)
    assert outcome.status == "done", outcome.why
    data = enrichment(ctx, item)
    assert data["tmdb_id"] == 603 and data["imdb_id"] == "tt0133093"
    assert data["title"] == "The Matrix" and data["year"] == 1999
    assert data["overview"] and data["genres"]
    assert data["confidence"] > 0.95 and "strong match" in data["why"]
    assert data["artwork"]["poster"].endswith("-poster.jpg") and Path(data["artwork"]["poster"]).is_file()
    assert any(s["kind"] == "poster" for s in ctx.db.query("SELECT kind FROM sidecars"))
    assert not any("/inbox" in r.path for r in replay.requests())  # no path leaves the machine


async def test_fight_club_gets_its_cast_and_ratings(make_ctx: Any) -> None:
    ctx = make_ctx()
    item = add_item(ctx, "Fight.Club.1999.mkv", title="Fight Club", year=1999)
    outcome = await EnrichService(ctx).enrich_item(item)
    assert outcome.status == "done", outcome.why
    data = enrichment(ctx, item)
    assert data["tmdb_id"] == 550
    assert {"name": "Edward Norton", "character": "Narrator"} in data["cast"]
    assert isinstance(data["ratings"]["tmdb"], float)
    assert "David Fincher" in data["directors"]


async def test_an_id_in_the_name_wins_over_the_search(make_ctx: Any, replay: ReplayServer) -> None:
    ctx = make_ctx()
    item = add_item(ctx, "Some Other Name (1999) [tmdbid-603].mkv", title="Some Other Name", year=1999)
    outcome = await EnrichService(ctx).enrich_item(item)
    assert outcome.status == "done" and enrichment(ctx, item)["tmdb_id"] == 603
    assert not [r for r in replay.requests("tmdb") if r.path.startswith("/3/search")]


async def test_an_imdb_id_in_an_nfo_is_resolved_through_find(make_ctx: Any, tmp_path: Path) -> None:
    ctx = make_ctx()
    item = add_item(ctx, "matrix.mkv", title="matrix")
    nfo = tmp_path / "matrix.nfo"
    nfo.write_text('<movie><title>x</title><uniqueid type="imdb" default="true">tt0133093</uniqueid>'
                   "</movie>")
    ctx.catalog.add_sidecar(item, "nfo", str(nfo), str(nfo), nfo.stat().st_size, None)
    outcome = await EnrichService(ctx).enrich_item(item)
    assert outcome.status == "done", outcome.why
    assert enrichment(ctx, item)["tmdb_id"] == 603


async def test_an_ambiguous_title_needs_review_and_applies_nothing(make_ctx: Any) -> None:
    ctx = make_ctx()
    item = add_item(ctx, "fight club.mkv", title="fight club")
    outcome = await EnrichService(ctx).enrich_item(item)
    assert outcome.status == "needs_review"
    data = enrichment(ctx, item)
    assert "tmdb_id" not in data and "overview" not in data
    assert len(data["candidates"]) >= 2 and data["candidates"][0]["id"] == 550


async def test_not_found_is_an_answer_and_cached(make_ctx: Any, replay: ReplayServer) -> None:
    ctx = make_ctx()
    item = add_item(ctx, "Qwzxv.Nothing.2011.mkv", title="Qwzxv Nothing", year=2011)
    service = EnrichService(ctx)
    assert (await service.enrich_item(item)).status == "none"
    asked = replay.count("tmdb")
    assert asked >= 1
    assert (await service.enrich_item(item)).status == "none"
    assert replay.count("tmdb") == asked  # the negative answers came from the cache


async def test_a_bad_key_pauses_the_provider_and_ingestion_goes_on(
        make_ctx: Any, replay: ReplayServer) -> None:
    ctx = make_ctx()
    replay.bad_key("tmdb")
    service = EnrichService(ctx)
    first = add_item(ctx, "The.Matrix.1999.mkv", title="The Matrix", year=1999)
    second = add_item(ctx, "Fight.Club.1999.mkv", title="Fight Club", year=1999)
    assert (await service.enrich_item(first)).status == "none"
    asked = replay.count("tmdb")
    assert (await service.enrich_item(second)).status == "none"  # paused: not asked again
    assert replay.count("tmdb") == asked and "tmdb" in service.paused
    assert "refused" in service.paused["tmdb"]


async def test_a_429_with_retry_after_leaves_it_pending_then_it_completes(
        make_ctx: Any, replay: ReplayServer) -> None:
    ctx = make_ctx()
    replay.status("tmdb", 429, {"status_code": 25, "status_message": "test: rate limit"},
                  headers={"Retry-After": "2"}, times=1)
    service = EnrichService(ctx)
    item = add_item(ctx, "The.Matrix.1999.mkv", title="The Matrix", year=1999)
    outcome = await service.enrich_item(item)
    assert outcome.status == "pending"
    row = ctx.db.execute("SELECT next_attempt_at, attempts FROM enrich_state WHERE item_id = ?",
                         [item]).fetchone()
    assert row[0] - time.time() >= 1.5 and row[1] == 1  # Retry-After honoured
    assert service.due(now=time.time() + 120) == [item]
    assert (await service.enrich_item(item)).status == "done"


async def test_a_slow_provider_never_holds_the_job(make_ctx: Any, replay: ReplayServer) -> None:
    ctx = make_ctx(timeout_seconds=1.0)
    replay.delay("tmdb", 5)
    item = add_item(ctx, "The.Matrix.1999.mkv", title="The Matrix", year=1999)
    step = Enrich.from_context(ctx)
    job = Job(id="j" * 32, path="/inbox/The.Matrix.1999.mkv", item_id=item, media_type="movie")
    started = time.monotonic()
    out = await step.handle(job)
    assert time.monotonic() - started < 2.0
    assert out == job
    state = ctx.db.execute("SELECT status FROM enrich_state WHERE item_id = ?", [item]).fetchone()
    assert state[0] == "pending"
    replay.delay("tmdb", 0)


async def test_a_5xx_storm_and_a_down_service_leave_items_pending_until_it_is_back(
        make_ctx: Any, replay: ReplayServer) -> None:
    from handlers.enrich.service import background

    ctx = make_ctx()
    service = EnrichService(ctx)
    ctx._resources["enrich"] = service  # the background task uses the same service
    items = [add_item(ctx, "The.Matrix.1999.mkv", title="The Matrix", year=1999),
             add_item(ctx, "Fight.Club.1999.mkv", title="Fight Club", year=1999)]
    replay.status("tmdb", 503, "busy", times=None)
    assert [(await service.enrich_item(i)).status for i in items] == ["pending", "pending"]
    replay.clear_faults()
    replay.down("tmdb")
    ctx.db.execute("UPDATE enrich_state SET next_attempt_at = 0")
    assert [(await service.enrich_item(i)).status for i in service.due()] == ["pending", "pending"]
    replay.up("tmdb")
    ctx.db.execute("UPDATE enrich_state SET next_attempt_at = 0")
    stop = asyncio.Event()
    task = asyncio.create_task(background(ctx, stop))
    try:
        for _ in range(200):  # a provider that failed is skipped for DOWN_SECONDS (5 s) first
            states = [r[0] for r in ctx.db.execute("SELECT status FROM enrich_state ORDER BY item_id")]
            if states == ["done", "done"]:
                break
            await asyncio.sleep(0.1)
        assert states == ["done", "done"]
    finally:
        stop.set()
        await task
    assert [e["type"] for e in ctx.events.events].count("enriched") == 2  # type: ignore[attr-defined]


async def test_the_cache_prevents_a_second_request_after_a_restart(
        make_ctx: Any, replay: ReplayServer) -> None:
    ctx = make_ctx()
    item = add_item(ctx, "The.Matrix.1999.mkv", title="The Matrix", year=1999)
    assert (await EnrichService(ctx).enrich_item(item)).status == "done"
    asked = {p: replay.count(p) for p in ("tmdb", "omdb", "musicbrainz")}
    ctx.db.conn.commit()
    again = make_ctx()  # a new process: new service, same database
    assert (await EnrichService(again).enrich_item(item)).status == "done"
    assert {p: replay.count(p) for p in ("tmdb", "omdb", "musicbrainz")} == asked


async def test_musicbrainz_stays_at_one_request_per_second_under_parallel_work(
        make_ctx: Any, replay: ReplayServer) -> None:
    ctx = make_ctx()
    service = EnrichService(ctx)
    started = time.monotonic()
    await asyncio.gather(*(service._optional("musicbrainz", "search_soundtrack", f"Film {n}", 2000 + n)
                           for n in range(4)))
    assert replay.count("musicbrainz") == 4
    assert replay.max_in_window("musicbrainz", 0.95) <= 1
    assert time.monotonic() - started >= 2.9


async def test_a_locked_field_survives_a_refresh_and_a_pin_sticks(make_ctx: Any) -> None:
    ctx = make_ctx()
    service = EnrichService(ctx)
    item = add_item(ctx, "The.Matrix.1999.mkv", title="The Matrix", year=1999)
    assert (await service.enrich_item(item)).status == "done"
    data = enrichment(ctx, item)
    data["overview"] = "My own words."
    data["locked"] = ["overview"]
    ctx.catalog.update_item(item, {"enrichment": data})
    assert (await service.enrich_item(item, refresh=True)).status == "done"
    data = enrichment(ctx, item)
    assert data["overview"] == "My own words." and data["tmdb_id"] == 603
    service.pin(item, {"tmdb": 604, "kind": "movie"})
    assert (await service.enrich_item(item, refresh=True)).status == "done"
    data = enrichment(ctx, item)
    assert data["tmdb_id"] == 604 and data["why"] == "pinned by a person"
    assert data["overview"] == "My own words."
    pin = ctx.db.execute("SELECT pin FROM enrich_state WHERE item_id = ?", [item]).fetchone()[0]
    assert json.loads(pin) == {"tmdb": 604, "kind": "movie"}


async def test_a_tv_episode_is_matched_to_its_series(make_ctx: Any) -> None:
    ctx = make_ctx()
    item = add_item(ctx, "Breaking.Bad.S01E01.720p.mkv", media_type="episode", title="Breaking Bad",
                    season=1, episode=1)
    ctx.db.execute("UPDATE items SET season = 1, episode = '1' WHERE id = ?", [item])
    outcome = await EnrichService(ctx).enrich_item(item)
    assert outcome.status == "done", outcome.why
    data = enrichment(ctx, item)
    assert data["kind"] == "tv" and data["tmdb_id"] == 1396
    assert data["series"] == {"tmdb_id": 1396, "name": "Breaking Bad"}
    assert data["year"] == 2008 and data["overview"]


async def test_other_media_types_are_left_alone(make_ctx: Any, replay: ReplayServer) -> None:
    ctx = make_ctx()
    item = add_item(ctx, "song.mp3", media_type="music", title="A song")
    assert (await EnrichService(ctx).enrich_item(item)).status == "none"
    assert replay.count() == 0
