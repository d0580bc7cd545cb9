"""`harbord search` / `reindex` on a library built from the recorded TMDb/OMDb responses.

Items are catalogued with their real titles and overviews/plots, embedded with the real
MiniLM model through the real embed and index handlers, and searched the way the CLI does:
in a reader that never takes the daemon's writer lock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from handlers.search.commands import reindex, run_search, search
from handlers.search.config import EmbedConfig
from handlers.search.embed import Embed
from handlers.search.embedders import Embedder, load_embedder
from handlers.search.index import Index
from handlers.search.reader import SpaceReader
from handlers.search.vectors import VectorSpace
from harbord.catalog import Catalog, open_db
from harbord.config import Config, PathsConfig
from harbord.context import Context
from harbord.errors import NoVectorError
from harbord.job import Job
from tests.support.fixtures import FIXTURES, recorded_objects

SPACE = "all-minilm-l6-v2"


@pytest.fixture(scope="session")
def minilm() -> Embedder:
    """The packaged MiniLM model, loaded once per test session (cached per process)."""
    return load_embedder(EmbedConfig())


@dataclass
class Film:
    title: str
    year: int | None
    overview: str
    media_type: str = "movie"
    series: dict[str, Any] = dataclasses.field(default_factory=dict)
    parsed: dict[str, Any] = dataclasses.field(default_factory=dict)


def _year(value: Any) -> int | None:
    text = str(value or "")[:4]
    return int(text) if text.isdigit() else None


def recorded_films() -> list[Film]:
    """Every movie with an overview/plot in the recorded TMDb and OMDb responses (deduped by
    title), the Game of Thrones season 1 episodes, and one episode each of two other shows."""
    films: dict[str, Film] = {}

    for node in recorded_objects(skip_tv=True):
        title = node.get("title") or node.get("Title")
        overview = node.get("overview") or node.get("Plot")
        date = node.get("release_date") or node.get("Year")
        if (isinstance(title, str) and isinstance(overview, str) and len(overview) > 20
                and date is not None and node.get("Type", "movie") == "movie"):
            films.setdefault(title, Film(title, _year(date), overview))
    out = list(films.values())
    season = json.loads((FIXTURES / "tmdb/jdrouet_tmdb-api/tv-season-details.json").read_text())
    for ep in season["episodes"]:
        out.append(Film("Game of Thrones", 2011, ep["overview"], "episode",
                        {"title": "Game of Thrones", "season": 1, "episode": ep["episode_number"],
                         "episode_title": ep["name"]}, {"season": 1, "episode": ep["episode_number"]}))
    shows = json.loads((FIXTURES / "tmdb/c-eg_themoviedbapi/search_tv_breaking_bad.json").read_text())
    shows["results"] += json.loads((FIXTURES / "tmdb/jdrouet_tmdb-api/search-tv.json").read_text())["results"]
    for show in shows["results"]:
        if show["name"] in ("Breaking Bad", "House of the Dragon") and show.get("overview"):
            out.append(Film(show["name"], _year(show.get("first_air_date")), show["overview"], "episode",
                            {"title": show["name"], "season": 1, "episode": 1}, {"season": 1, "episode": 1}))
    return out


@dataclass
class Library:
    config: Config
    ids: dict[str, list[int]]  # title -> item ids
    types: dict[int, str]


def catalogue(catalog: Catalog, films: list[Film]) -> tuple[list[Job], dict[str, list[int]], dict[int, str]]:
    jobs: list[Job] = []
    ids: dict[str, list[int]] = {}
    types: dict[int, str] = {}
    for n, film in enumerate(films):
        file_hash = f"{n + 1:064x}"
        catalog.add_object(file_hash, 1000 + n, ".mkv", f"/library/{file_hash[:2]}/{file_hash}.mkv")
        job = Job(id=f"{n + 1:032x}", path=f"/inbox/{film.title}.mkv", file_hash=file_hash,
                  media_type=film.media_type, parsed={"title": film.title, "year": film.year, **film.parsed},
                  enrichment={"overview": film.overview}, series=film.series)
        item_id = catalog.upsert_item(job)
        jobs.append(dataclasses.replace(job, item_id=item_id))
        ids.setdefault(film.title, []).append(item_id)
        types[item_id] = film.media_type
    return jobs, ids, types


async def ingest(config: Config, films: list[Film]) -> tuple[dict[str, list[int]], dict[int, str]]:
    """Catalogue ``films`` and run them through the embed and index handlers concurrently."""
    db = open_db(config.db_path)
    catalog = Catalog(db)
    jobs, ids, types = catalogue(catalog, films)
    ctx = Context(config=config, db=db, catalog=catalog)
    embed, index = Embed.from_context(ctx), Index.from_context(ctx)

    async def one(job: Job) -> Job:
        return await index.handle(await embed.handle(job))

    done = await asyncio.gather(*[one(job) for job in jobs])
    assert all(SPACE in job.vectors for job in done)
    await ctx.aclose()
    db.conn.close()
    return ids, types


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, minilm: Embedder) -> Library:
    """The recorded films and episodes, ingested through the embed and index handlers."""
    root = tmp_path_factory.mktemp("library")
    config = Config(paths=PathsConfig(state=root / "state", library=root / "lib"))
    config.paths.state.mkdir(parents=True)
    ids, types = asyncio.run(ingest(config, recorded_films()))
    return Library(config, ids, types)


QUERIES = [
    ("a paralysed marine is sent to an alien moon and sides with the natives", "Avatar"),
    ("a thief who steals corporate secrets by getting inside people's dreams", "Inception"),
    ("a little cleaning robot left behind alone on an empty Earth", "WALL·E"),
    ("astronauts use a wormhole to look for a new home for humanity", "Interstellar"),
    ("insomniac office worker and a soap salesman start an underground fighting club", "Fight Club"),
    ("a girl on holiday in Paris is abducted by a gang of human traffickers", "Taken"),
    ("a scientist tests his teleportation machine on himself and something goes wrong", "The Fly"),
    ("a secretary steals money, runs away and stops at the Bates Motel", "Psycho"),
    ("global warming causes superstorms and a sudden new ice age", "The Day After Tomorrow"),
    ("two little sisters move to the country and meet friendly forest spirits", "My Neighbor Totoro"),
    ("prince returns home to Wakanda to become king after his father dies", "Black Panther"),
    ("Holmes and Watson take on Professor Moriarty", "Sherlock Holmes: A Game of Shadows"),
    ("a lonely writer falls in love with the operating system on his computer", "Her"),
    ("robbers take hostages inside a bank in Manhattan and a detective negotiates", "Inside Man"),
    ("a ballet dancer slowly loses her mind playing the swan queen", "Black Swan"),
    ("teenager Miles Morales meets spider heroes from other dimensions", "Spider-Man: Into the Spider-Verse"),
]


@pytest.mark.parametrize(("query", "title"), QUERIES, ids=[t for _, t in QUERIES])
def test_a_description_finds_the_film_in_the_top_3(library: Library, query: str, title: str) -> None:
    hits = run_search(library.config, query, k=3)
    assert title in [h.title for h in hits], [h.title for h in hits]


def test_the_library_is_big_enough_to_mean_something(library: Library) -> None:
    assert sum(len(v) for v in library.ids.values()) >= 100
    assert all(title in library.ids for _, title in QUERIES)


def test_type_filters(library: Library) -> None:
    query = "a chemistry teacher with cancer starts making drugs"
    movies = run_search(library.config, query, k=10, media_type="movie")
    assert len(movies) == 10 and {h.media_type for h in movies} == {"movie"}
    episodes = run_search(library.config, query, k=5, media_type="episode")
    assert episodes[0].title == "Breaking Bad"
    assert {h.media_type for h in episodes} == {"episode"}
    assert run_search(library.config, query, k=5, media_type="photo") == []
    war = "Eddard Stark investigates the death of the Hand of the King"
    unfiltered = run_search(library.config, war, k=10, media_type="episode")
    assert [h.title for h in unfiltered].count("Game of Thrones") >= 3
    shows = run_search(library.config, war, k=10, media_type="series")
    titles = [h.title for h in shows]
    assert titles[0] == "Game of Thrones" and len(titles) == len(set(titles)) == 3
    assert set(titles) == {"Game of Thrones", "House of the Dragon", "Breaking Bad"}


def test_like_finds_neighbours_of_an_item(library: Library) -> None:
    reloaded = library.ids["The Matrix Reloaded"][0]
    hits = run_search(library.config, None, k=5, like=reloaded)
    assert reloaded not in [h.item_id for h in hits]
    assert {"The Matrix Revolutions", "The Matrix"} & {h.title for h in hits[:3]}
    deadpool = run_search(library.config, None, k=3, like=library.ids["Deadpool 2"][0])
    assert "Deadpool" in [h.title for h in deadpool]
    with pytest.raises(NoVectorError):
        run_search(library.config, None, like=999_999)


def test_cli_search_json_and_table(library: Library) -> None:
    runner = CliRunner()
    result = runner.invoke(search, ["a little robot alone on a deserted Earth", "-k", "3", "--json"],
                           obj=library.config)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 3 and rows[0]["title"] == "WALL·E"
    assert set(rows[0]) == {"item_id", "score", "title", "media_type", "year", "path"}
    assert rows[0]["media_type"] == "movie" and rows[0]["year"] == 2008
    assert rows[0]["path"].startswith("/library/") and rows[0]["score"] > rows[2]["score"]
    table = runner.invoke(search, ["wormhole space travel", "--type", "movie", "-k", "2"], obj=library.config)
    assert table.exit_code == 0 and "Interstellar" in table.stdout and "score" in table.stdout
    like = runner.invoke(search, ["--like", str(library.ids["Avatar"][0]), "--json"], obj=library.config)
    assert like.exit_code == 0 and len(json.loads(like.stdout)) == 10
    assert runner.invoke(search, [], obj=library.config).exit_code == 2
    assert runner.invoke(search, ["x", "--type", "book"], obj=library.config).exit_code == 2
    missing = runner.invoke(search, ["--like", "424242"], obj=library.config)
    assert missing.exit_code == 1 and "no vector" in missing.stderr


def test_an_empty_index_returns_an_empty_list(tmp_path: Path, minilm: Embedder) -> None:
    config = Config(paths=PathsConfig(state=tmp_path / "state", library=tmp_path / "lib"))
    runner = CliRunner()
    result = runner.invoke(search, ["anything", "--json"], obj=config)  # no database at all
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    config.paths.state.mkdir(parents=True)
    open_db(config.db_path).conn.close()  # a database, no vector space yet
    result = runner.invoke(search, ["anything", "--json"], obj=config)
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    assert runner.invoke(search, ["anything"], obj=config).stdout.strip() == "no results"
    assert runner.invoke(reindex, [], obj=config).stdout.strip() == "no vector spaces yet"


async def test_search_reads_while_the_daemon_writes(tmp_path: Path, minilm: Embedder) -> None:
    """A reader does not need the writer: it sees a new item before the next index save, and
    ``reindex`` refuses while the writer lock is held, then rebuilds once it is free."""
    config = Config(paths=PathsConfig(state=tmp_path / "state", library=tmp_path / "lib"))
    config.paths.state.mkdir(parents=True)
    db = open_db(config.db_path)
    catalog = Catalog(db)
    films = [f for f in recorded_films() if f.title in ("Avatar", "Inception", "Psycho", "Her")]
    jobs, ids, _ = catalogue(catalog, films)
    ctx = Context(config=config, db=db, catalog=catalog)
    embed, index = Embed.from_context(ctx), Index.from_context(ctx)
    for job in jobs[:3]:
        await index.handle(await embed.handle(job))
    service = embed.service
    assert await service.save()
    await index.handle(await embed.handle(jobs[3]))  # committed after the save, not saved yet
    space = await service.space()
    assert space.dirty
    reader = SpaceReader(config.paths.state, db, SPACE)
    assert reader.index_state == "loaded" and reader.index is not None and reader.index.live_count == 3
    hits = run_search(config, "a man falls in love with his computer's voice assistant", k=1)
    assert [h.title for h in hits] == ["Her"]
    busy = CliRunner().invoke(reindex, [], obj=config)
    assert busy.exit_code == 1 and "stop the daemon" in busy.stderr
    await ctx.aclose()  # the daemon stops: final save, lock released
    done = CliRunner().invoke(reindex, ["--space", SPACE], obj=config)
    assert done.exit_code == 0 and f"{SPACE}: 4 vectors indexed" in done.stdout
    reopened = VectorSpace.open(config.paths.state, db, space=SPACE, model_id=minilm.model_id, dim=384,
                                params=SpaceReader(config.paths.state, db, SPACE).params)
    assert reopened.last_load == "loaded" and reopened.index.live_count == 4
    reopened.close()
    assert run_search(config, "dream heist", k=1)[0].item_id == ids["Inception"][0]


@pytest.fixture
def no_index(library: Library) -> Iterator[Path]:
    """Hide the saved index of the library for one test."""
    folder = library.config.paths.state / "vectors" / SPACE
    (folder / "index.json").rename(folder / "index.json.hidden")
    yield folder
    (folder / "index.json.hidden").rename(folder / "index.json")


def test_without_a_saved_index_search_is_exact(library: Library, no_index: Path) -> None:
    db = open_db(library.config.db_path)
    reader = SpaceReader(library.config.paths.state, db, SPACE)
    assert reader.index_state.startswith("brute-force: missing")
    db.conn.close()
    hits = run_search(library.config, "a little cleaning robot left alone on Earth", k=3)
    assert hits[0].title == "WALL·E"
