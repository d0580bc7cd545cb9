"""The enrichment commands as a person runs them: ``harbord --config FILE enrich|match|edit|
soundtrack|show`` as subprocesses, no daemon, on a real SQLite catalog made by ``harbord ingest``
of real small videos named like movies, with TMDb, OMDb and MusicBrainz configured to the replay
server of recorded answers (tests/support/replay.py).

One catalog serves the module (``harbord ingest`` and the interpreter start-up of each command
are the expensive parts): each test works on its own item, and nothing one test does changes
what another asserts, whatever the order (pins and locks are per item; ``enrich --all
--refresh`` keeps every item's pin and locks).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.enrich.conftest import OMDB_KEY, TMDB_KEY
from tests.support.fixtures import FIXTURES
from tests.support.media import make_mkv
from tests.support.replay import ReplayServer, make_image

pytestmark = pytest.mark.slow

MATRIX = "The.Matrix.1999.1080p.BluRay.x264-GROUP.mkv"
"""Edited in one test: its overview and genres."""
MATRIX_AGAIN = "The.Matrix.1999.720p.WEB-DL.mkv"
"""Other bytes, same title and year: pinned to tmdb:604 in one test."""
FIGHT_CLUB = "Fight.Club.1999.mkv"
"""Given a soundtrack by hand in one test."""
AMBIGUOUS = "fight club.mkv"
"""No year: several Fight Clubs are near, so nothing is applied (needs_review)."""


@dataclass
class Catalog:
    """The module's catalog: its config, item ids by file name, and what the first runs of the
    commands printed (before any test changed anything)."""

    config: Path
    root: Path
    replay: ReplayServer
    items: dict[str, int] = field(default_factory=dict)
    first_enrich_all: dict[str, Any] = field(default_factory=dict)
    first_stats: dict[str, Any] = field(default_factory=dict)
    asked_by_enrich_all: int = -1

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``harbord --config FILE ARGS`` (not checked)."""
        return subprocess.run([sys.executable, "-m", "harbord", "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=120)

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        """:meth:`run`, which must exit 0."""
        proc = self.run(*args)
        assert proc.returncode == 0, f"harbord {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}"
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args).stdout)

    def enrichment(self, item: int) -> dict[str, Any]:
        """``harbord show ITEM --json``'s ``enrichment``."""
        shown: dict[str, Any] = self.json("show", str(item), "--json")
        return dict(shown["enrichment"])


def recorded_movie(replay: ReplayServer, tmdb_id: int) -> dict[str, Any]:
    """The recorded TMDb details the replay server serves for ``/3/movie/<tmdb_id>``: what TMDb
    says, to compare the catalog with."""
    found = replay.match("tmdb", f"/3/movie/{tmdb_id}", [
        ("append_to_response", "credits,external_ids,alternative_titles"), ("language", "en-US")])
    assert found is not None
    data: dict[str, Any] = json.loads((FIXTURES / found[0].file).read_text(encoding="utf-8"))
    return data


def _config_text(root: Path, replay: ReplayServer) -> str:
    """The module's config. ``timeout_seconds`` is long enough for ingest's enrich step to wait
    for every answer (MusicBrainz's 1 request/s queues the four movies' lookups): a standalone
    ``harbord ingest`` has no background task to finish a late one."""
    return (
        f'[paths]\nstate = "{root / "state"}"\nlibrary = "{root / "library"}"\n'
        f'[[watch]]\npath = "{root / "inbox"}"\n'
        '[mqtt]\nenabled = false\n'
        '[pipeline]\nhandlers = ["parse", "probe", "checksum", "store", "enrich"]\n'
        '[enrich]\ntimeout_seconds = 30.0\n'
        f'[enrich.tmdb]\napi_key = "{TMDB_KEY}"\nbase_url = "{replay.tmdb_base}"\n'
        f'[enrich.omdb]\napi_key = "{OMDB_KEY}"\nbase_url = "{replay.omdb_url}"\n'
        f'[enrich.musicbrainz]\nhost = "{replay.musicbrainz_host}"\nhttps = false\n'
    )


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    """``harbord ingest`` of four movies (enrich in the chain), then the first ``harbord enrich
    --all --json`` and, at the same time, ``harbord enrich --stats --json``; the replay server
    stopped at the end of the module."""
    root = tmp_path_factory.mktemp("enrich-commands")
    src = root / "downloads"
    src.mkdir()
    for seed, name in enumerate((MATRIX, MATRIX_AGAIN, FIGHT_CLUB, AMBIGUOUS), start=11):
        make_mkv(src / name, seed=seed, subtitles=False)
    with ReplayServer() as replay:
        config = root / "harbord.toml"
        config.write_text(_config_text(root, replay))
        cat = Catalog(config, root, replay)
        ingested = cat.json("ingest", str(src), "--json")
        assert {Path(p).name: r["outcome"] for p, r in ingested.items()} == dict.fromkeys(
            (MATRIX, MATRIX_AGAIN, FIGHT_CLUB, AMBIGUOUS), "ingested")
        cat.items = {Path(p).name: int(r["item_id"]) for p, r in ingested.items()}
        asked = replay.count()
        stats = subprocess.Popen(  # meanwhile (it only reads): the coverage ingest left
            [sys.executable, "-m", "harbord", "--config", str(config), "enrich", "--stats", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cat.first_enrich_all = cat.json("enrich", "--all", "--json")
        cat.asked_by_enrich_all = replay.count() - asked
        stdout, stderr = stats.communicate(timeout=120)
        assert stats.returncode == 0, stderr
        cat.first_stats = json.loads(stdout)
        yield cat


def test_enrich_all_sums_up_and_stats_show_the_coverage(catalog: Catalog) -> None:
    ids = catalog.items
    summary = catalog.first_enrich_all
    assert summary["items"] == {str(ids[MATRIX]): "done", str(ids[MATRIX_AGAIN]): "done",
                                str(ids[FIGHT_CLUB]): "done", str(ids[AMBIGUOUS]): "needs_review"}
    assert summary["counts"] == {"done": 3, "needs_review": 1}
    assert catalog.asked_by_enrich_all == 0  # ingest's answers are cached: nothing asked again

    stats = catalog.first_stats
    assert stats["items"] == 4 and stats["not_enriched"] == 0
    assert stats["by_status"] == {"done": 3, "needs_review": 1}
    assert sum(stats["by_source"].values()) == 3
    assert set(stats["by_source"]) <= {"tmdb", "tmdb+omdb"}
    assert stats["average_confidence"] == 1.0  # exact title and year, all three
    assert stats["cached_answers"] > 0


def test_edited_fields_survive_a_refresh_until_unlocked(catalog: Catalog, tmp_path: Path) -> None:
    item = catalog.items[MATRIX]
    tmdb = recorded_movie(catalog.replay, 603)
    tmdb_genres = [g["name"] for g in tmdb["genres"]]
    words = tmp_path / "overview.txt"
    words.write_text("A hacker learns that the world is a simulation. My own words.\n", encoding="utf-8")

    edited = catalog.ok("edit", str(item), f"overview=@{words}", "genres+=Noir")
    assert "locked: genres, overview" in edited.stdout
    asked = catalog.replay.count("tmdb")
    refreshed = catalog.json("enrich", "--all", "--refresh", "--json")
    assert refreshed["items"][str(item)] == "done"
    assert catalog.replay.count("tmdb") > asked  # --refresh really asked TMDb again
    data = catalog.enrichment(item)
    assert data["overview"] == "A hacker learns that the world is a simulation. My own words."
    assert data["genres"] == [*tmdb_genres, "Noir"]
    assert data["locked"] == ["genres", "overview"]
    assert data["tmdb_id"] == 603 and data["tagline"] == tmdb["tagline"]  # the rest is TMDb's

    catalog.ok("edit", str(item), "--unlock", "overview")
    assert catalog.json("enrich", str(item), "--refresh", "--json")["items"] == {str(item): "done"}
    data = catalog.enrichment(item)
    assert data["overview"] == tmdb["overview"]  # TMDb's words back
    assert data["genres"] == [*tmdb_genres, "Noir"] and data["locked"] == ["genres"]


def test_a_pinned_identity_survives_a_refresh_and_brings_its_own_poster(catalog: Catalog) -> None:
    item = catalog.items[MATRIX_AGAIN]  # the search found 603, as for MATRIX
    matched = catalog.json("match", str(item), "tmdb:604", "--json")
    assert matched == {"items": {str(item): "done"}, "counts": {"done": 1}}
    assert catalog.json("enrich", str(item), "--refresh", "--json")["items"] == {str(item): "done"}
    data = catalog.enrichment(item)
    reloaded = recorded_movie(catalog.replay, 604)
    assert data["tmdb_id"] == 604 and data["why"] == "pinned by a person"
    assert data["title"] == "The Matrix Reloaded" == reloaded["title"] and data["year"] == 2003
    assert data["overview"] == reloaded["overview"]
    # the poster is the one of 604, not the one stored when the search had said 603
    poster = Path(data["artwork"]["poster"]).read_bytes()
    assert poster == make_image(Path(reloaded["poster_path"]).stem, "w500")


def test_an_ambiguous_title_waits_for_a_person_to_choose(catalog: Catalog) -> None:
    item = catalog.items[AMBIGUOUS]  # needs_review after ingest (the first enrich --all says so)
    listed = catalog.json("match", str(item), "--candidates", "--json")
    assert listed["item"] == item and "medium match" in listed["why"]
    candidates = listed["candidates"]
    assert len(candidates) >= 2 and candidates[0]["id"] == 550
    assert candidates[0]["title"] == "Fight Club" and candidates[0]["year"] == 1999
    distances = [c["distance"] for c in candidates]
    assert distances == sorted(distances) and all(isinstance(d, float) for d in distances)
    assert all(c["why"] and all(isinstance(w, str) for w in c["why"]) for c in candidates)
    assert any("no year in the name" in w for w in candidates[0]["why"])

    matched = catalog.json("match", str(item), "tmdb:550", "--json")
    assert matched["items"] == {str(item): "done"}
    data = catalog.enrichment(item)
    assert data["status"] == "done" and data["tmdb_id"] == 550 and data["title"] == "Fight Club"
    assert data["why"] == "pinned by a person"
    assert data["overview"] == recorded_movie(catalog.replay, 550)["overview"]


def test_a_soundtrack_by_hand_wins_over_musicbrainz(catalog: Catalog) -> None:
    item = catalog.items[FIGHT_CLUB]
    added = catalog.ok("soundtrack", str(item), "--add", "Main Title | Don Davis | 3:45",
                       "--add", "Stealing Fat | The Dust Brothers, Tom Waits")
    assert "2 track(s)" in added.stdout
    asked = catalog.replay.count("musicbrainz")
    assert catalog.json("enrich", str(item), "--refresh", "--json")["items"] == {str(item): "done"}
    assert catalog.replay.count("musicbrainz") == asked  # the person's entry: MusicBrainz not asked
    soundtrack = catalog.enrichment(item)["soundtrack"]
    assert soundtrack == {"source": "user", "release_group_id": None, "tracks": [
        {"title": "Main Title", "artists": ["Don Davis"], "length_seconds": 225},
        {"title": "Stealing Fat", "artists": ["The Dust Brothers", "Tom Waits"], "length_seconds": None}]}


BAD_INPUT = [  # (arguments, exit code, what the one line on stderr says)
    (("match", "99999", "tmdb:1"), 1, "no item 99999"),
    (("match", "{item}", "nonsense"), 2, "give tmdb:ID, tv:ID or imdb:ttNNNNNNN"),
    (("edit", "{item}", "justaword"), 2, "give FIELD=VALUE or FIELD+=VALUE"),
    (("edit", "{item}", "year=nineteen"), 2, "a year is four digits"),
    (("edit", "{item}", "overview=@/nonexistent/overview.txt"), 2, "No such file or directory"),
    (("soundtrack", "99999", "--add", "A | B | 1:00"), 1, "no item 99999"),
    (("enrich", "99999"), 1, "no item 99999"),
]


def test_bad_input_gets_one_clear_line_and_its_exit_code(catalog: Catalog) -> None:
    """Each command fails before it changes anything; they run at once (each is mostly the
    interpreter starting), and every failure is reported."""
    item = str(catalog.items[AMBIGUOUS])
    procs = [(args, code, message, subprocess.Popen(
        [sys.executable, "-m", "harbord", "--config", str(catalog.config),
         *(a.replace("{item}", item) for a in args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)) for args, code, message in BAD_INPUT]
    wrong = []
    for args, code, message, proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        ok = (proc.returncode == code and "Traceback" not in stdout + stderr
              and stderr.startswith("harbord: ") and message in stderr and stderr.count("\n") == 1)
        if not ok:
            wrong.append(f"harbord {' '.join(args)}: exit {proc.returncode} (want {code}), "
                         f"stderr {stderr!r} (want one line with {message!r})")
    assert not wrong, "\n".join(wrong)
