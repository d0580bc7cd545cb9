"""The provider modules (handlers/enrich/providers/{tmdb,omdb,musicbrainz}.py) through the real
client libraries against the replay server (tests/support/replay.py): answers as plain data,
every failure as one of the contract errors, every request bounded by its timeout.

Where the recordings do not answer the exact request a provider makes, a test adds a route that
serves a recorded body of the same kind under that request, and says so ("stand-in")."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from typing import Any
from urllib.parse import urlencode

import musicbrainzngs
import pytest
from musicbrainzngs import mbxml
from PIL import Image

from handlers.enrich.providers import BadKey, NotFound, ProviderError, RateLimited, Unavailable
from handlers.enrich.providers import musicbrainz as mb_module
from handlers.enrich.providers.http import TimeoutSession, error_for_status, retry_after
from handlers.enrich.providers.musicbrainz import (
    MusicBrainz,
    best_release,
    release_tracks,
    soundtrack_query,
)
from handlers.enrich.providers.omdb import Omdb, ratings, year_range
from handlers.enrich.providers.tmdb import Tmdb
from tests.support.fixtures import FIXTURES
from tests.support.replay import ReplayServer, _route

TMDB_KEY = "providers-tmdb-key"
OMDB_KEY = "providers-omdb-key"
TIMEOUT = 0.5
"""Short, so that the fault tests stay fast; the replay answers in milliseconds."""

SOUNDTRACK_RG = "f52bc6a1-c848-49e6-85de-f8f53459a624"
"""Super Meat Boy! — the recorded release group with secondary type Soundtrack."""


@pytest.fixture
def tmdb(replay: ReplayServer) -> Any:
    with Tmdb(replay.tmdb_base, TMDB_KEY, "en-US", TIMEOUT) as client:
        yield client


@pytest.fixture
def omdb(replay: ReplayServer) -> Any:
    with Omdb(replay.omdb_url, OMDB_KEY, TIMEOUT) as client:
        yield client


@pytest.fixture
def mb(replay: ReplayServer) -> Any:
    with MusicBrainz(replay.musicbrainz_host, https=False, timeout=TIMEOUT, version="0.1.0",
                     contact="harbord tests") as client:
        yield client


def _file(entry: Any) -> str:
    return entry.route.file.rsplit("/", 1)[-1] if entry.route else ""


def _elapsed(call: Any, error: type[BaseException]) -> tuple[float, Any]:
    start = time.monotonic()
    with pytest.raises(error) as caught:
        call()
    return time.monotonic() - start, caught.value


# --------------------------------------------------------------------------- TMDb


def test_tmdb_matrix_details_and_search(tmdb: Tmdb, replay: ReplayServer) -> None:
    matrix = tmdb.movie(603)
    assert (matrix["id"], matrix["title"], matrix["imdb_id"]) == (603, "The Matrix", "tt0133093")
    assert matrix["alternative_titles"]["titles"]  # appended in the recorded answer
    json.dumps(matrix)  # plain data
    first = replay.requests("tmdb")[0]
    assert first.params["append_to_response"] == "credits,external_ids,alternative_titles"
    assert first.params["api_key"] == TMDB_KEY and first.params["language"] == "en-US"
    # the recording (2017, alternative_titles only) lacks credits and external_ids: each is
    # asked for on its own, and is left out where the server has none (not recorded: 404)
    parts = [r.path for r in replay.requests("tmdb")[1:]]
    assert parts == ["/3/movie/603/credits", "/3/movie/603/external_ids"]
    assert "credits" not in matrix and "external_ids" not in matrix

    results = tmdb.search_movie("The Matrix")
    assert results[0]["id"] == 603 and results[0]["title"] == "The Matrix"
    assert {"id", "title", "original_title", "release_date", "overview", "popularity"} <= set(results[0])
    assert [r["id"] for r in tmdb.search_movie("the matrix reloaded", year=2003)] == [604]
    searches = [r for r in replay.requests("tmdb") if r.path == "/3/search/movie"]
    assert [s.params["page"] for s in searches] == ["1", "1"]  # never tmdbv3api's "1false"
    assert not any("include_adult" in s.params for s in searches)
    assert searches[1].params["year"] == "2003"
    # the key never enters the process environment (tmdbv3api's own default)
    assert TMDB_KEY not in os.environ.values()


def test_tmdb_fight_club_with_credits(tmdb: Tmdb, replay: ReplayServer) -> None:
    fight_club = tmdb.movie(550)
    assert fight_club["title"] == "Fight Club"
    # /movie/550 was recorded without append_to_response: credits and external ids come from
    # their own recorded answers, nested as append_to_response nests them (no "id")
    credits = fight_club["credits"]
    assert "id" not in credits and credits["cast"][0]["name"] == "Edward Norton"
    assert any(c["job"] == "Director" and c["name"] == "David Fincher" for c in credits["crew"])
    assert fight_club["external_ids"]["imdb_id"] == "tt0137523" and "id" not in fight_club["external_ids"]
    assert "alternative_titles" not in fight_club  # not recorded: a 404, left out
    assert [(r.path, r.status) for r in replay.requests("tmdb")] == [
        ("/3/movie/550", 200), ("/3/movie/550/credits", 200), ("/3/movie/550/external_ids", 200),
        ("/3/movie/550/alternative_titles", 404)]


def test_tmdb_find_by_imdb_id(tmdb: Tmdb, replay: ReplayServer) -> None:
    matrix = tmdb.find_imdb("tt0133093")
    assert [m["id"] for m in matrix["movie_results"]] == [603] and matrix["tv_results"] == []
    breaking_bad = tmdb.find_imdb("tt0903747")
    assert breaking_bad["tv_results"][0]["id"] == 1396 and breaking_bad["movie_results"] == []
    assert [r.path for r in replay.requests("tmdb")] == ["/3/find/tt0133093", "/3/find/tt0903747"]
    assert all(r.params["external_source"] == "imdb_id" for r in replay.requests("tmdb"))
    with pytest.raises(ValueError):
        tmdb.find_imdb("/media/inbox/The Matrix (1999).mkv")  # only ids leave the machine
    assert replay.count("tmdb") == 2


def test_tmdb_search_tv_breaking_bad(tmdb: Tmdb, replay: ReplayServer) -> None:
    shows = tmdb.search_tv("Breaking Bad")
    assert shows[0]["id"] == 1396 and shows[0]["name"] == "Breaking Bad"
    assert shows[0]["first_air_date"].startswith("2008")
    [request] = replay.requests("tmdb")
    assert request.path == "/3/search/tv" and request.params["query"] == "Breaking Bad"
    assert not replay.misses()


def test_tmdb_tv_and_episode(tmdb: Tmdb, replay: ReplayServer) -> None:
    got = tmdb.tv(1399)
    assert got["name"] == "Game of Thrones"
    assert got["external_ids"]["imdb_id"] == "tt0944947" and got["content_ratings"]["results"]
    episode = tmdb.episode(1399, 1, 1)
    assert (episode["name"], episode["season_number"], episode["episode_number"]) == (
        "Winter Is Coming", 1, 1)
    assert episode["crew"] and episode["guest_stars"]
    json.dumps([got, episode])


def test_tmdb_image_from_the_configured_host(tmdb: Tmdb, replay: ReplayServer) -> None:
    poster = tmdb.movie(603)["poster_path"]
    data = tmdb.image(poster, "w92")
    picture = Image.open(io.BytesIO(data))
    assert (picture.format, picture.size) == ("JPEG", (92, 138))
    [image] = replay.requests("images")
    assert image.path == f"/t/p/w92{poster}" and "api_key" not in image.params
    assert replay.requests("tmdb")[-1].path == "/3/configuration"  # where secure_base_url came from
    assert tmdb.image(poster, "original", base_url=replay.images_base)[:2] == b"\xff\xd8"
    assert replay.count("images") == 2 and replay.requests("tmdb")[-1].path == "/3/configuration"
    with pytest.raises(NotFound):  # the image host's 404
        tmdb.image("/missing.jpg", "w92", base_url=replay.url("images", "/nowhere/"))
    for bad in ("/home/me/poster.jpg", "../poster.jpg", "poster.jpg"):
        with pytest.raises(ValueError):
            tmdb.image(bad, "w92", base_url=replay.images_base)


def test_tmdb_unknown_id_is_not_found(tmdb: Tmdb, replay: ReplayServer) -> None:
    # tmdbv3api returns the recorded 404 (status_code 34) as an object; the session saw the 404
    with pytest.raises(NotFound, match="could not be found"):
        tmdb.movie(99999999)
    assert replay.count("tmdb") == 1  # no part is fetched for a movie that is not there


def test_tmdb_bad_key(replay: ReplayServer, tmdb: Tmdb) -> None:
    replay.bad_key("tmdb")
    with pytest.raises(BadKey, match="Invalid API key"):
        tmdb.movie(550)
    with Tmdb(replay.tmdb_base, "", "en-US", TIMEOUT) as keyless, pytest.raises(BadKey):
        keyless.search_movie("Fight Club")
    assert replay.count("tmdb") == 1  # no key: nothing sent


def test_tmdb_validation_error_is_a_provider_error(tmdb: Tmdb) -> None:
    with pytest.raises(ProviderError) as caught:
        tmdb.search_movie("")  # recorded 422 {"errors": ["query must be provided"]}
    assert type(caught.value) is ProviderError and "422" in str(caught.value)


def test_tmdb_429_with_retry_after(tmdb: Tmdb, replay: ReplayServer) -> None:
    # TMDb's documented 429 shape (status_code 25); the message text is ours
    body = {"status_code": 25, "status_message": "test: over the limit", "success": False}
    replay.status("tmdb", 429, body, headers={"Retry-After": "3"}, times=1)
    with pytest.raises(RateLimited) as caught:
        tmdb.movie(550)
    assert caught.value.retry_after == 3.0 and caught.value.provider == "tmdb"
    assert tmdb.movie(550)["title"] == "Fight Club"  # then normal answers


def test_tmdb_rate_limit_headers_raise_instead_of_sleeping(tmdb: Tmdb, replay: ReplayServer) -> None:
    # tmdbv3api sleeps until X-RateLimit-Reset when Remaining < 1 (wait_on_rate_limit): not here
    details = (FIXTURES / "tmdb/jdrouet_tmdb-api/movie-details.json").read_bytes()
    reset = int(time.time()) + 30
    replay.status("tmdb", 200, details, content_type="application/json",
                  headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)})
    elapsed, error = _elapsed(lambda: tmdb.movie(550), RateLimited)
    assert elapsed < 1 and error.retry_after is not None and 25 <= error.retry_after <= 31


def test_tmdb_delay_beyond_timeout_is_unavailable(tmdb: Tmdb, replay: ReplayServer) -> None:
    replay.delay("tmdb", 5)
    elapsed, error = _elapsed(lambda: tmdb.movie(550), Unavailable)
    assert "timed out" in str(error) and TIMEOUT <= elapsed < TIMEOUT + 1
    assert TMDB_KEY not in str(error)  # messages carry the path only, never the query


def test_tmdb_down_and_5xx_are_unavailable(tmdb: Tmdb, replay: ReplayServer) -> None:
    replay.down("tmdb")
    elapsed, _ = _elapsed(lambda: tmdb.search_movie("Fight Club"), Unavailable)
    assert elapsed < 1
    replay.up("tmdb")
    replay.status("tmdb", 502, "<html>Bad Gateway</html>", content_type="text/html", times=1)
    with pytest.raises(Unavailable, match="502"):  # tmdbv3api fails decoding the HTML: the status decides
        tmdb.search_movie("Fight Club")
    replay.status("tmdb", 500, {"status_code": 11, "status_message": "Internal error", "success": False})
    with pytest.raises(Unavailable, match="500"):
        tmdb.search_movie("Fight Club")
    assert tmdb.search_movie("Fight Club")[0]["id"] == 550


def test_tmdb_instances_keep_their_own_key_session_and_base(replay: ReplayServer) -> None:
    other = ReplayServer()
    other.start()
    try:
        with Tmdb(replay.tmdb_base, "key-one", "en-US", TIMEOUT) as one, \
                Tmdb(other.tmdb_base, "key-two", "pt-BR", TIMEOUT) as two:
            assert one.find_imdb("tt0133093")["movie_results"][0]["title"] == "The Matrix"
            assert two.find_imdb("tt0133093")["movie_results"][0]["title"] == "Matrix"
            assert one.movie(550)["title"] == "Fight Club"
        [a, *_] = replay.requests("tmdb")
        [b] = other.requests("tmdb")
        assert (a.params["api_key"], a.params["language"]) == ("key-one", "en-US")
        assert (b.params["api_key"], b.params["language"]) == ("key-two", "pt-BR")
    finally:
        other.stop()


# --------------------------------------------------------------------------- OMDb


def test_omdb_by_id_and_by_title(omdb: Omdb, replay: ReplayServer) -> None:
    avengers = omdb.by_imdb("tt0848228")
    assert (avengers["Title"], avengers["Year"], avengers["imdbID"]) == ("The Avengers", "2012", "tt0848228")
    assert avengers["Ratings"][0] == {"Source": "Internet Movie Database", "Value": "8.1/10"}
    # the fopp cache recorded t=<title> alone: kind=None sends no type
    assert omdb.by_title("Black Panther", kind=None)["imdbID"] == "tt1825683"
    assert omdb.by_title("Yahşi Batı", kind=None)["imdbID"] == "tt1567448"
    assert not replay.misses()
    with pytest.raises(NotFound):  # the default kind goes out as type=movie: not recorded
        omdb.by_title("Black Panther", year=2018)
    miss = replay.misses("omdb")[-1]
    assert (miss.params["t"], miss.params["y"], miss.params["type"]) == ("Black Panther", "2018", "movie")
    assert all(r.params["apikey"] == OMDB_KEY and r.path == "/" for r in replay.requests("omdb"))


def test_omdb_error_kinds_are_kept_apart(omdb: Omdb, replay: ReplayServer) -> None:
    with pytest.raises(NotFound, match="Movie not found!"):
        omdb.by_imdb("tt0000001")
    with pytest.raises(NotFound, match=r"Incorrect IMDb ID\."):
        omdb.by_imdb("not-an-id")
    replay.bad_key("omdb", times=1)  # 401 + "Invalid API key!" (requests.HTTPError inside omdb)
    with pytest.raises(BadKey, match="Invalid API key!"):
        omdb.by_imdb("tt0848228")
    replay.status("omdb", 200, body='{"Response":"False","Error":"Request limit reached!"}',
                  content_type="application/json")
    with pytest.raises(RateLimited, match="Request limit reached!") as caught:
        omdb.by_imdb("tt0848228")
    assert caught.value.retry_after is None
    # OMDb sends the limit with a 401 too: the body's words win over the status
    replay.status("omdb", 401, body='{"Response":"False","Error":"Request limit reached!"}',
                  headers={"Retry-After": "3600"}, content_type="application/json")
    with pytest.raises(RateLimited) as caught:
        omdb.by_imdb("tt0848228")
    assert caught.value.retry_after == 3600
    assert omdb.by_imdb("tt0848228")["Title"] == "The Avengers"
    with Omdb(replay.omdb_url, None, TIMEOUT) as keyless, pytest.raises(BadKey):
        keyless.by_imdb("tt0848228")


def test_omdb_faults(omdb: Omdb, replay: ReplayServer) -> None:
    replay.status("omdb", 503, "Service Unavailable", content_type="text/plain")
    with pytest.raises(Unavailable, match="503"):
        omdb.by_imdb("tt0848228")
    replay.status("omdb", 429, "slow down", headers={"Retry-After": "2"}, content_type="text/plain")
    with pytest.raises(RateLimited) as caught:
        omdb.by_imdb("tt0848228")
    assert caught.value.retry_after == 2
    replay.delay("omdb", 5)
    elapsed, error = _elapsed(lambda: omdb.by_imdb("tt0848228"), Unavailable)
    assert TIMEOUT <= elapsed < TIMEOUT + 1 and OMDB_KEY not in str(error)
    replay.delay("omdb", 0)
    replay.down("omdb")
    elapsed, _ = _elapsed(lambda: omdb.by_title("The Avengers", kind=None), Unavailable)
    assert elapsed < 1


def test_omdb_ratings_of_recorded_records(omdb: Omdb) -> None:
    assert ratings(omdb.by_imdb("tt0848228")) == {
        "imdb": 8.1, "imdb_votes": 1191030, "rotten_tomatoes": 92, "metacritic": 69,
        "content_rating": "PG-13"}
    assert ratings(omdb.by_imdb("tt4633694")) == {
        "imdb": 8.6, "imdb_votes": 122126, "rotten_tomatoes": 97, "metacritic": 87, "content_rating": "PG"}
    # Venom (Dec 2018 cache): no Rotten Tomatoes entry, Rated "N/A", Metascore "35"
    assert ratings(omdb.by_title("Venom", kind=None)) == {
        "imdb": 6.9, "imdb_votes": 154911, "rotten_tomatoes": None, "metacritic": 35, "content_rating": None}
    # a 1962 "Captain Marvel": 27 votes, Metascore "N/A"
    old = ratings(omdb.by_title("Captain Marvel", kind=None))
    assert (old["imdb_votes"], old["metacritic"], old["rotten_tomatoes"]) == (27, None, None)
    inhumans = omdb.by_title("Inhumans", kind=None)
    assert inhumans["Type"] == "series" and ratings(inhumans)["content_rating"] == "TV-PG"
    assert year_range(inhumans["Year"]) == (2017, 2017)
    for path in sorted((FIXTURES / "omdb/by_title_fopp_cache").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if path.name.startswith("_"):
            continue
        parsed = ratings(record)
        assert isinstance(parsed["imdb"], float) and isinstance(parsed["imdb_votes"], int), path.name
        assert year_range(record["Year"])[0] == int(record["Year"][:4])


def test_omdb_value_parsing() -> None:
    record = {"imdbRating": "N/A", "imdbVotes": "1,234,567", "Metascore": "N/A", "Rated": "N/A",
              "Ratings": [{"Source": "Internet Movie Database", "Value": "8.7/10"},
                          {"Source": "Rotten Tomatoes", "Value": "87%"},
                          {"Source": "Metacritic", "Value": "74/100"}]}
    assert ratings(record) == {"imdb": 8.7, "imdb_votes": 1234567, "rotten_tomatoes": 87,
                               "metacritic": 74, "content_rating": None}
    assert ratings({}) == dict.fromkeys(("imdb", "imdb_votes", "rotten_tomatoes", "metacritic",
                                         "content_rating"))
    assert year_range("1992\u20131995") == (1992, 1995)
    assert year_range("2010\u2013") == (2010, None)
    assert year_range("1999") == (1999, 1999)
    assert year_range("2005-2007") == (2005, 2007)
    for bad in ("N/A", "", "99", "1999/2000"):
        with pytest.raises(ValueError):
            year_range(bad)


# --------------------------------------------------------------------------- MusicBrainz


def test_musicbrainz_soundtracks_for_imdb(mb: MusicBrainz, replay: ReplayServer) -> None:
    # tt0407362 (Battlestar Galactica, 2004) is the one recorded IMDb-URL lookup, in JSON
    related = mb.imdb_release_groups("tt0407362")
    assert len(related) == 4 and related[0]["title"].startswith("Battlestar Galactica: Season 2")
    [lookup] = replay.requests("musicbrainz")
    assert lookup.path == "/ws/2/url/" and lookup.params["fmt"] == "json"
    assert lookup.params["resource"] == "https://www.imdb.com/title/tt0407362/"
    assert lookup.params["inc"] == "release-group-rels"
    # the relation targets carry no types, so each group is looked up; none of the four
    # lookups is recorded (404: skipped) ...
    replay.clear_log()
    assert mb.soundtracks_for_imdb("tt0407362") == []
    looked_up = [r.path.rsplit("/", 1)[-1] for r in replay.requests("musicbrainz")[1:]]
    assert looked_up == [g["id"] for g in related]
    # ... stand-in: the recorded soundtrack group (Super Meat Boy!) answers for the first one
    replay.routes.append(_route("musicbrainz", f"/ws/2/release-group/{related[0]['id']}",
                                f"musicbrainz/musicbrainzngs_ws2_xml/release-group/{SOUNDTRACK_RG}.xml"))
    assert mb.soundtracks_for_imdb("tt0407362") == [{
        "id": SOUNDTRACK_RG, "title": "Super Meat Boy!", "first_release_date": "2010-10-27",
        "secondary_types": ["Soundtrack"]}]
    # a film MusicBrainz has no URL entity for: its 404
    with pytest.raises(NotFound):
        mb.soundtracks_for_imdb("tt0133093")
    assert musicbrainzngs.musicbrainz._useragent.startswith("harbord/0.1.0 python-musicbrainzngs/")


def test_musicbrainz_release_group_lookup(mb: MusicBrainz) -> None:
    assert mb.release_group(SOUNDTRACK_RG) == {
        "id": SOUNDTRACK_RG, "title": "Super Meat Boy!", "first_release_date": "2010-10-27",
        "secondary_types": ["Soundtrack"]}
    with pytest.raises(NotFound):
        mb.release_group("00000000-0000-0000-0000-000000000000")
    with pytest.raises(NotFound):  # 400 "Invalid mbid."
        mb.release_group("not-an-mbid")


def test_musicbrainz_search_soundtrack(mb: MusicBrainz, replay: ReplayServer) -> None:
    query = soundtrack_query("Pat Garrett & Billy the Kid")
    assert query == r'releasegroup:"Pat Garrett \& Billy the Kid" AND secondarytype:soundtrack'
    assert soundtrack_query("Blade  Runner", 1982).endswith(" AND firstreleasedate:1982")
    # stand-in: the recorded search artist:(bob dylan) (10 groups, one of them the soundtrack)
    # answers our strict query; hits without the Soundtrack type are dropped here as well
    replay.routes.append(_route(
        "musicbrainz", "/ws/2/release-group/?" + urlencode({"query": query, "limit": "10"}),
        "musicbrainz/soundtracks/release-group_search_artist_bob_dylan_limit10_incl_soundtrack.xml"))
    hits = mb.search_soundtrack("Pat Garrett & Billy the Kid")
    assert [(h["title"], h["secondary_types"], h["score"]) for h in hits] == [
        ("Pat Garrett & Billy the Kid", ["Soundtrack"], 100)]
    [search] = replay.requests("musicbrainz")
    assert search.params["query"] == query and not search.miss
    # not recorded with a year: MusicBrainz's 404 shape from the replay
    with pytest.raises(NotFound):
        mb.search_soundtrack("Pat Garrett & Billy the Kid", 1973)
    assert replay.requests("musicbrainz")[-1].params["query"].endswith("AND firstreleasedate:1973")


def test_musicbrainz_tracks(mb: MusicBrainz, replay: ReplayServer) -> None:
    group = "b84625af-6229-305f-9f1b-59c0185df016"
    srv, ngs = "musicbrainz/musicbrainz-server_ws2_xml", "musicbrainz/musicbrainzngs_ws2_xml"
    # stand-ins: the server's recorded browse of this group (asked without inc=media/limit)
    # answers with its two releases, Official and Pseudo-Release on the same day; the official
    # one is read, its recorded answer standing in for it being another official release's
    replay.routes.append(_route("musicbrainz", f"/ws/2/release/?release-group={group}&inc=media&limit=100",
                                f"{srv}/BrowseRelease__browse_releases_via_release_group.xml"))
    replay.routes.append(_route(
        "musicbrainz", "/ws/2/release/0385f276-5f4f-4c81-a7a4-6bd7b8d85a7e?inc=recordings+artist-credits",
        f"{ngs}/release/833d4c3a-2635-4b7a-83c4-4e560588f23a-recordings+artist-credits.xml"))
    got = mb.tracks(group)
    browse, lookup = replay.requests("musicbrainz")
    assert browse.params == {"release-group": group, "inc": "media", "limit": "100"}
    assert lookup.path == "/ws/2/release/0385f276-5f4f-4c81-a7a4-6bd7b8d85a7e"  # Official beat Pseudo-Release
    assert lookup.params["inc"] == "recordings artist-credits"
    assert got["release_id"] == "833d4c3a-2635-4b7a-83c4-4e560588f23a"  # the stand-in body's own id
    assert got["tracks"][:2] == [
        {"title": "Pollux", "artists": ["JT Bruce"], "length_seconds": 246.0},
        {"title": "Vega", "artists": ["JT Bruce"], "length_seconds": 96.0}]
    json.dumps(got)
    with pytest.raises(NotFound):  # a group whose browse is not recorded: 404
        mb.tracks(SOUNDTRACK_RG)


def test_musicbrainz_best_release_and_tracks_of_recorded_bodies() -> None:
    srv = FIXTURES / "musicbrainz/musicbrainz-server_ws2_xml"
    with (srv / "BrowseRelease__browse_releases_via_label.xml").open("rb") as f:
        by_label = mbxml.parse_message(f)["release-list"]  # Official (12 tracks), Bootleg (18)
    assert best_release(by_label)["id"] == "adcf7b48-086e-48ee-b420-1001f88d672f"
    assert best_release([]) is None
    releases = [{"id": "a", "status": "Official", "date": "2001-05-01", "medium-list": [{"track-count": 10}]},
                {"id": "b", "status": "Official", "date": "1999-03-31", "medium-list": [{"track-count": 9}]},
                {"id": "c", "status": "Official", "date": "1999-03-31", "medium-list": [{"track-count": 14}]},
                {"id": "d", "status": "Promotion", "date": "1998"},
                {"id": "e", "status": "Official"}]
    assert best_release(releases)["id"] == "c"  # official, earliest, then the most tracks
    assert best_release(releases[3:])["id"] == "e"  # undated official still beats a promo
    releases_dir = FIXTURES / "musicbrainz/musicbrainzngs_ws2_xml/release"
    with (releases_dir / "8eb2b179-643d-3507-b64c-29fcc6745156-recordings.xml").open("rb") as f:
        release = mbxml.parse_message(f)["release"]  # Sea of Cowards, inc=recordings only
    tracks = release_tracks(release)
    assert tracks[0] == {"title": "Blue Blood Blues", "artists": [], "length_seconds": 202.306}
    # the track title is the recording's; no inc=artist-credits, so nobody is credited
    assert all(t["title"] and isinstance(t["length_seconds"], float) and t["artists"] == [] for t in tracks)


def test_musicbrainz_5xx_is_unavailable_at_once(mb: MusicBrainz, replay: ReplayServer) -> None:
    replay.status("musicbrainz", 500, "<error><text>boom</text></error>", times=None, content_type="text/xml")
    elapsed, _ = _elapsed(lambda: mb.release_group(SOUNDTRACK_RG), Unavailable)
    assert elapsed < 2  # musicbrainzngs alone: 8 tries and ~56 s of sleeps
    assert replay.count("musicbrainz") == 1
    replay.clear_faults()
    replay.status("musicbrainz", 502, "Bad Gateway", content_type="text/plain")
    with pytest.raises(Unavailable, match="502"):
        mb.release_group(SOUNDTRACK_RG)
    assert mb.release_group(SOUNDTRACK_RG)["title"] == "Super Meat Boy!"


def test_musicbrainz_rate_limits(mb: MusicBrainz, replay: ReplayServer) -> None:
    replay.status("musicbrainz", 503, "rate limited", headers={"Retry-After": "7"}, content_type="text/plain")
    elapsed, error = _elapsed(lambda: mb.release_group(SOUNDTRACK_RG), RateLimited)
    assert error.retry_after == 7 and elapsed < 2  # MusicBrainz declines over-limit requests with a 503
    replay.status("musicbrainz", 429, "slow down", headers={"Retry-After": "2"}, content_type="text/plain")
    with pytest.raises(RateLimited) as caught:
        mb.release_group(SOUNDTRACK_RG)
    assert caught.value.retry_after == 2
    assert replay.count("musicbrainz") == 2


def test_musicbrainz_timeout_down_and_auth(mb: MusicBrainz, replay: ReplayServer) -> None:
    replay.delay("musicbrainz", 5)
    elapsed, error = _elapsed(lambda: mb.release_group(SOUNDTRACK_RG), Unavailable)
    assert "timed out" in str(error) and TIMEOUT <= elapsed < TIMEOUT + 1
    assert replay.count("musicbrainz") == 1  # not tried again
    replay.delay("musicbrainz", 0)
    replay.down("musicbrainz")
    elapsed, _ = _elapsed(lambda: mb.imdb_release_groups("tt0407362"), Unavailable)
    assert elapsed < 1
    replay.up("musicbrainz")
    replay.bad_key("musicbrainz", times=1)
    with pytest.raises(BadKey):
        mb.release_group(SOUNDTRACK_RG)


def test_musicbrainz_leaves_the_library_as_it_found_it(musicbrainz: Any, replay: ReplayServer) -> None:
    # the `musicbrainz` fixture set its own globals: they are back after each of our calls,
    # and direct use of musicbrainzngs keeps the library's own errors (the retry bound is ours only)
    # https against the replay's plain-http port: the TLS handshake fails (a NetworkError inside)
    with MusicBrainz(replay.musicbrainz_host, https=True, timeout=TIMEOUT) as tls, pytest.raises(Unavailable):
        tls.release_group(SOUNDTRACK_RG)
    assert mb_module.installed()
    m = musicbrainzngs.musicbrainz
    settings = (m.hostname, m.https, m.ws_format, m.do_rate_limit)
    assert settings == (replay.musicbrainz_host, False, "xml", False)
    with pytest.raises(musicbrainzngs.ResponseError):
        musicbrainz.get_release_group_by_id("00000000-0000-0000-0000-000000000000")
    assert musicbrainz.get_release_group_by_id(SOUNDTRACK_RG)["release-group"]["title"] == "Super Meat Boy!"


def test_before_request_runs_per_http_request(replay: ReplayServer) -> None:
    calls: list[str] = []
    with Tmdb(replay.tmdb_base, TMDB_KEY, "en-US", TIMEOUT,
              before_request=lambda: calls.append("tmdb")) as tmdb, \
            MusicBrainz(replay.musicbrainz_host, https=False, timeout=TIMEOUT,
                        before_request=lambda: calls.append("mb")) as mb:
        tmdb.movie(550)
        mb.soundtracks_for_imdb("tt0407362")
    assert calls == ["tmdb"] * 4 + ["mb"] * 5
    assert (replay.count("tmdb"), replay.count("musicbrainz")) == (4, 5)


def test_musicbrainz_calls_from_threads(replay: ReplayServer) -> None:
    errors: list[BaseException] = []

    def work(client: MusicBrainz) -> None:
        try:
            for _ in range(3):
                client.release_group(SOUNDTRACK_RG)
        except BaseException as err:  # reported below
            errors.append(err)

    with MusicBrainz(replay.musicbrainz_host, https=False, timeout=TIMEOUT) as client:
        threads = [threading.Thread(target=work, args=(client,)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors and replay.count("musicbrainz") == 9


# --------------------------------------------------------------------------- http helpers


def test_http_helpers() -> None:
    assert retry_after({"Retry-After": "120"}) == 120
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0) == 10
    assert retry_after({"Retry-After": "soon"}) is None and retry_after({}) is None
    assert isinstance(error_for_status("x", 401), BadKey)
    assert isinstance(error_for_status("x", 404), NotFound)
    assert isinstance(error_for_status("x", 503), Unavailable)
    assert type(error_for_status("x", 422)) is ProviderError
    assert error_for_status("x", 200) is None
    limited = error_for_status("x", 429, {"Retry-After": "5"})
    assert isinstance(limited, RateLimited) and limited.retry_after == 5
    with TimeoutSession(1.0) as session:
        assert session.last is None
