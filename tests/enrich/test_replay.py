"""The replay server (tests/support/replay.py) answers the REAL client libraries as the real
services would, from the recorded responses in ../shared/fixtures: tmdbv3api, omdb and
musicbrainzngs run unmodified, pointed at it only by configuration (see conftest.py), and
every fault mode the enrichment capability must survive is reproducible."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import musicbrainzngs
import omdb
import pytest
import requests
from PIL import Image
from tmdbv3api import TV, Configuration, Episode, Find, Movie, Search, Season
from tmdbv3api.exceptions import TMDbException
from tmdbv3api.tmdb import TMDb

from tests.enrich.conftest import OMDB_KEY, TMDB_KEY
from tests.support.replay import ReplayServer

Tmdb = Callable[..., Any]


def _file(entry: Any) -> str:
    return entry.route.file.rsplit("/", 1)[-1] if entry.route else ""


# --------------------------------------------------------------------------- TMDb (tmdbv3api)


def test_tmdb_movie_details(tmdb: Tmdb, replay: ReplayServer) -> None:
    details = tmdb(Movie).details(603)
    assert (details.id, details.title, details.imdb_id) == (603, "The Matrix", "tt0133093")
    # tmdbv3api's default append_to_response (videos,trailers,images,...) was never recorded:
    # the closest recording (release_dates,images) answers, flagged as not exact
    [entry] = replay.requests("tmdb")
    assert entry.params["api_key"] == TMDB_KEY and entry.params["language"] == "en-US"
    assert _file(entry) == "movie_603_append_release_dates_images.json" and not entry.exact
    assert len(details.release_dates.results) > 0

    alt = tmdb(Movie).details(603, append_to_response="alternative_titles")
    assert alt.title == "The Matrix" and alt.alternative_titles.titles
    assert _file(replay.requests("tmdb")[-1]).endswith("06_3_movie_603.json")
    assert tmdb(Movie).details(604, append_to_response="alternative_titles").title == "The Matrix Reloaded"


def test_tmdb_search_movies(tmdb: Tmdb, replay: ReplayServer) -> None:
    search = tmdb(Search)
    results = search.movies("The Matrix")
    assert results[0].id == 603 and results[0].title == "The Matrix"
    assert search.total_results == "21"  # tmdbv3api keeps paging in os.environ, as strings
    assert [r.id for r in search.movies("the matrix reloaded", year=2003)] == [604]
    assert [r.id for r in search.movies("Зеркала Mirrors", year=2008)] == [13515]
    assert search.movies("Fight Club")[0].id == 550
    assert search.total_pages == "2"
    assert not replay.misses()
    # a year that was not recorded is another request: a miss, with TMDb's 404 body
    assert search.movies("The Matrix", year=1999).status_code == 34  # no "results" in it
    [miss] = replay.misses("tmdb")
    assert miss.status == 404 and miss.params["year"] == "1999"


def test_tmdb_find_by_imdb_id(tmdb: Tmdb, replay: ReplayServer) -> None:
    find = tmdb(Find)
    matrix = find.find_by_imdb_id("tt0133093")
    assert [m.id for m in matrix.movie_results] == [603]
    assert list(matrix.tv_results) == [] and list(matrix.tv_season_results) == []
    assert find.find_by_imdb_id("tt0903747").tv_results[0].id == 1396
    find.language = "pt-BR"  # an environment variable; the fixture restores it
    assert find.find_by_imdb_id("tt0133093").movie_results[0].title == "Matrix"
    assert _file(replay.requests("tmdb")[-1]) == "find_tt0133093_imdb_id_pt-BR.json"


def test_tmdb_tv_season_episode(tmdb: Tmdb) -> None:
    assert tmdb(TV).details(1399).name == "Game of Thrones"
    season = tmdb(Season).details(1399, 1)
    assert season.season_number == 1 and len(season.episodes) == 10
    episode = tmdb(Episode).details(1399, 1, 1)
    assert (episode.name, episode.season_number, episode.episode_number) == ("Winter Is Coming", 1, 1)
    # Search().tv_shows, not the deprecated TV().search: that one builds a fresh Search()
    # whose _base is the real host again (so do Movie.search/external and Person.search)
    assert tmdb(Search).tv_shows("Breaking Bad")[0].id == 1396


def test_tmdb_search_adult_false_quirk(tmdb: Tmdb, replay: ReplayServer) -> None:
    # tmdbv3api: `params += "&include_adult=%s" % "true" if adult else "false"` appends a bare
    # "false" to the page number when adult=False: the enrich code must leave adult unset
    tmdb(Search).movies("The Matrix", adult=False)
    [miss] = replay.misses("tmdb")
    assert miss.params["page"] == "1false" and "include_adult" not in miss.params


def test_tmdb_artwork_is_served_by_the_replay(tmdb: Tmdb, replay: ReplayServer) -> None:
    images = tmdb(Configuration).api_configuration().images
    assert images.secure_base_url == images.base_url == replay.images_base
    poster = tmdb(Movie).details(603).poster_path
    response = requests.get(f"{images.secure_base_url}w92{poster}", timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/jpeg"
    picture = Image.open(io.BytesIO(response.content))
    assert (picture.format, picture.size) == ("JPEG", (92, 138))
    assert replay.count("images") == 1
    assert requests.get(f"{images.base_url}original/x.png", timeout=5).headers["Content-Type"] == "image/png"
    assert requests.get(replay.url("images", "/nothing"), timeout=5).status_code == 404


def test_tmdb_cassette_headers_are_cleaned(replay: ReplayServer) -> None:
    response = requests.get(f"{replay.tmdb_base}/movie/603/images", params={"api_key": "x"}, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json;charset=utf-8"
    assert "Content-Encoding" not in response.headers  # the stored body is already decoded
    assert not [h for h in response.headers if h.lower().startswith("x-ratelimit")]  # 2017 epochs
    assert response.headers["ETag"]  # other recorded headers are replayed
    assert response.json()["id"] == 603


def test_tmdb_unknown_id_is_a_404_that_tmdbv3api_does_not_raise(tmdb: Tmdb, replay: ReplayServer) -> None:
    # the recorded 404 body has no "success": false, so tmdbv3api returns it as an object:
    # the enrich code must look at status_code itself
    missing = tmdb(Movie).details(99999999)
    assert missing.status_code == 34
    [miss] = replay.misses("tmdb")
    assert miss.status == 404 and miss.path == "/3/movie/99999999"


def test_tmdb_bad_key_and_validation_errors_raise(tmdb: Tmdb, replay: ReplayServer) -> None:
    with pytest.raises(TMDbException, match="query must be provided"):
        tmdb(Search).movies("")  # recorded 422 {"errors": [...]}
    replay.bad_key("tmdb")
    with pytest.raises(TMDbException, match="Invalid API key"):
        tmdb(Movie).details(550)
    raw = requests.get(f"{replay.tmdb_base}/movie/550", timeout=5)
    assert raw.status_code == 401 and raw.json()["status_code"] == 7


def test_tmdb_caches_errors_until_cleared(tmdb: Tmdb, replay: ReplayServer) -> None:
    replay.bad_key("tmdb", times=1)
    for _ in range(2):
        with pytest.raises(TMDbException):
            tmdb(Movie).details(550)
    assert replay.count("tmdb") == 1  # the second call was answered from tmdbv3api's lru_cache
    TMDb.cached_request.cache_clear()
    assert tmdb(Movie).details(550).title == "Fight Club"
    assert replay.count("tmdb") == 2


class _TimeoutSession(requests.Session):
    """tmdbv3api passes no timeout: a session that adds one (used only when uncached)."""

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 0.2)
        return super().request(*args, **kwargs)


def test_tmdb_timeouts_need_an_uncached_session(tmdb: Tmdb, replay: ReplayServer) -> None:
    replay.delay("tmdb", 0.6)
    with pytest.raises(requests.Timeout):
        tmdb(Movie, obj_cached=False, session=_TimeoutSession()).details(550)
    # with its cache on, tmdbv3api calls requests.request() itself: the session (and its
    # timeout) is bypassed and the call simply waits for the slow answer
    start = time.monotonic()
    assert tmdb(Movie, session=_TimeoutSession()).details(550).title == "Fight Club"
    assert time.monotonic() - start >= 0.5


# --------------------------------------------------------------------------- OMDb (omdb)


def test_omdb_by_id_title_and_search(omdb_client: omdb.OMDBClient, replay: ReplayServer) -> None:
    avengers = omdb_client.imdbid("tt0848228")
    assert (avengers["title"], avengers["year"], avengers["imdb_id"]) == ("The Avengers", "2012", "tt0848228")
    assert omdb_client.title("Black Panther")["imdb_id"] == "tt1825683"
    assert omdb_client.title("Yahşi Batı")["imdb_id"] == "tt1567448"
    page2 = omdb_client.search_movie("batman", page=2)
    assert len(page2) == 10 and page2[0]["title"] == "Batman: Under the Red Hood"
    assert all(r.params["apikey"] == OMDB_KEY and r.path == "/" for r in replay.requests("omdb"))
    assert not replay.misses()


def test_omdb_error_bodies_become_empty_so_read_the_raw_response(
    omdb_client: omdb.OMDBClient, replay: ReplayServer
) -> None:
    assert omdb_client.imdbid("tt0000001") == {}
    assert omdb_client.search_movie("batman", page=12) == []  # the real past-the-end page
    # OMDBClient.request() takes the API's own parameter names and returns the
    # requests.Response: that is where the enrich code tells "not found" from "bad id"
    raw = omdb_client.request(i="tt0000001")
    assert isinstance(raw, requests.Response) and raw.status_code == 200
    assert raw.json() == {"Response": "False", "Error": "Movie not found!"}
    assert omdb_client.request(i="not-an-id").json()["Error"] == "Incorrect IMDb ID."
    assert omdb_client.request(s="batman", type="movie", page=12).json()["Error"] == "Movie not found!"
    assert len(replay.misses("omdb")) == 3


def test_omdb_bad_key_is_an_http_error(omdb_client: omdb.OMDBClient, replay: ReplayServer) -> None:
    replay.bad_key("omdb")
    with pytest.raises(requests.HTTPError) as caught:
        omdb_client.imdbid("tt0848228")
    response = caught.value.response
    assert response is not None and response.status_code == 401
    assert response.json() == {"Response": "False", "Error": "Invalid API key!"}


# --------------------------------------------------------------------------- MusicBrainz


def test_musicbrainz_url_lookup_by_imdb_url(musicbrainz: Any, replay: ReplayServer) -> None:
    # the only recorded IMDb-URL lookup is JSON (a TV series, Battlestar Galactica)
    with pytest.warns(UserWarning, match="json format is non-official"):
        musicbrainz.set_format("json")
    found = musicbrainz.browse_urls(resource="https://www.imdb.com/title/tt0407362/",
                                    includes=["release-group-rels"])
    assert found["resource"] == "https://www.imdb.com/title/tt0407362/"
    assert len(found["relations"]) == 4
    assert {r["target-type"] for r in found["relations"]} == {"release_group"}
    [entry] = replay.requests("musicbrainz")
    assert entry.path == "/ws/2/url/" and entry.params["fmt"] == "json"
    assert not entry.exact  # the recording also has artist-credits: a superset answers
    # a film with no recorded lookup (The Matrix): MusicBrainz's 404, "not linked"
    with pytest.raises(musicbrainzngs.ResponseError) as caught:
        musicbrainz.browse_urls(resource="https://www.imdb.com/title/tt0133093/",
                                includes=["release-group-rels"])
    assert caught.value.cause.code == 404


def test_musicbrainz_search_release_groups(musicbrainz: Any) -> None:
    found = musicbrainz.search_release_groups(artist="bob dylan", limit=10)
    assert found["release-group-count"] == 2787 and len(found["release-group-list"]) == 10
    soundtracks = [g for g in found["release-group-list"] if "Soundtrack" in g.get("secondary-type-list", [])]
    assert [g["title"] for g in soundtracks] == ["Pat Garrett & Billy the Kid"]
    assert soundtracks[0]["ext:score"]
    assert musicbrainz.search_release_groups("Affordable Pop Music")["release-group-list"]


def test_musicbrainz_release_with_recordings(musicbrainz: Any) -> None:
    release = musicbrainz.get_release_by_id("8eb2b179-643d-3507-b64c-29fcc6745156",
                                            includes=["recordings"])["release"]
    assert release["title"] == "Sea of Cowards"
    tracks = release["medium-list"][0]["track-list"]
    assert tracks and all(t["recording"]["title"] for t in tracks)
    credited = musicbrainz.get_release_by_id("833d4c3a-2635-4b7a-83c4-4e560588f23a",
                                             includes=["recordings", "artist-credits"])["release"]
    assert credited["title"] == "Ruined Subjects" and credited["artist-credit"]
    rg = musicbrainz.get_release_group_by_id("f52bc6a1-c848-49e6-85de-f8f53459a624")["release-group"]
    assert rg["secondary-type-list"] == ["Soundtrack"]


def test_musicbrainz_errors(musicbrainz: Any, replay: ReplayServer) -> None:
    with pytest.raises(musicbrainzngs.ResponseError) as caught:
        musicbrainz.get_release_by_id("not-an-mbid")
    assert caught.value.cause.code == 400
    with pytest.raises(musicbrainzngs.ResponseError) as caught:
        musicbrainz.get_release_by_id("00000000-0000-0000-0000-000000000000", includes=["recordings"])
    assert caught.value.cause.code == 404
    # a recorded include set that lacks a requested include does not answer
    with pytest.raises(musicbrainzngs.ResponseError):
        musicbrainz.get_release_by_id("8eb2b179-643d-3507-b64c-29fcc6745156",
                                      includes=["recordings", "labels"])
    replay.bad_key("musicbrainz", times=1)
    with pytest.raises(musicbrainzngs.AuthenticationError):
        musicbrainz.get_release_by_id("8eb2b179-643d-3507-b64c-29fcc6745156", includes=["recordings"])
    assert replay.count("musicbrainz") == 4  # 400/404/401 are not retried


def test_musicbrainz_down_is_a_network_error_at_once(musicbrainz: Any, replay: ReplayServer) -> None:
    replay.down("musicbrainz")
    start = time.monotonic()
    with pytest.raises(musicbrainzngs.NetworkError):
        musicbrainz.get_release_group_by_id("f52bc6a1-c848-49e6-85de-f8f53459a624")
    assert time.monotonic() - start < 2  # connection refused is not retried (a 5xx would be, ~56 s)
    replay.up("musicbrainz")
    assert musicbrainz.get_release_group_by_id("f52bc6a1-c848-49e6-85de-f8f53459a624")["release-group"]


# --------------------------------------------------------------------------- faults and the log


def test_429_with_retry_after_then_normal(replay: ReplayServer) -> None:
    body = {"status_code": 25, "status_message": "test: over the limit", "success": False}
    replay.status("tmdb", 429, body, headers={"Retry-After": "2"}, times=1)
    url = f"{replay.tmdb_base}/movie/550"
    first = requests.get(url, timeout=5)
    assert first.status_code == 429 and first.headers["Retry-After"] == "2"
    second = requests.get(url, timeout=5)
    assert second.status_code == 200 and second.json()["title"] == "Fight Club"
    assert [(r.status, r.fault) for r in replay.requests("tmdb")] == [(429, True), (200, False)]


def test_5xx_storm_then_recovery(replay: ReplayServer, omdb_client: omdb.OMDBClient) -> None:
    replay.status("omdb", 503, "Service Unavailable", times=3, content_type="text/plain")
    for _ in range(3):
        with pytest.raises(requests.HTTPError) as caught:
            omdb_client.imdbid("tt0848228")
        assert caught.value.response is not None and caught.value.response.status_code == 503
    assert omdb_client.imdbid("tt0848228")["title"] == "The Avengers"
    replay.status("tmdb", 500, times=None)  # until cleared
    assert {requests.get(f"{replay.tmdb_base}/movie/550", timeout=5).status_code for _ in range(3)} == {500}
    replay.clear_faults("tmdb")
    assert requests.get(f"{replay.tmdb_base}/movie/550", timeout=5).status_code == 200


def test_delay_makes_clients_time_out(replay: ReplayServer, omdb_client: omdb.OMDBClient) -> None:
    replay.delay("omdb", 1.0)
    with pytest.raises(requests.Timeout):
        requests.get(replay.omdb_url, params={"i": "tt0848228"}, timeout=0.2)
    with pytest.raises(requests.Timeout):
        omdb_client.imdbid("tt0848228", timeout=0.2)
    replay.delay("omdb", 0)
    assert omdb_client.imdbid("tt0848228", timeout=0.5)["title"] == "The Avengers"


def test_down_refuses_connections_for_that_provider_only(replay: ReplayServer) -> None:
    port = replay.port("tmdb")
    replay.down("tmdb")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{replay.tmdb_base}/movie/550", timeout=2)
    omdb_answer = requests.get(replay.omdb_url, params={"i": "tt0848228"}, timeout=2)
    assert omdb_answer.json()["Title"] == "The Avengers"
    replay.up("tmdb")
    assert replay.port("tmdb") == port
    assert requests.get(f"{replay.tmdb_base}/movie/550", timeout=2).status_code == 200


def test_request_log_counts_misses_and_rates(replay: ReplayServer) -> None:
    for _ in range(3):
        requests.get(f"{replay.tmdb_base}/movie/550", timeout=2)
        time.sleep(0.05)
    requests.get(replay.omdb_url, params={"t": "Nothing Recorded"}, timeout=2)
    assert (replay.count(), replay.count("tmdb"), replay.count("omdb")) == (4, 3, 1)
    [miss] = replay.misses()
    assert miss.provider == "omdb" and miss.params["t"] == "Nothing Recorded"
    assert miss.status == 200 and miss.raw.startswith("/?t=Nothing")
    assert replay.max_in_window("tmdb", 10.0) == 3 and replay.max_in_window("tmdb", 0.01) == 1
    assert 0 < replay.rate("tmdb") < 40
    replay.clear_log()
    assert replay.count() == 0


def test_every_route_points_at_a_recorded_file(replay: ReplayServer) -> None:
    for route in replay.routes:
        assert (replay.fixtures / route.file).is_file(), route.file
    for provider in ("tmdb", "omdb", "musicbrainz"):
        assert any(r.provider == provider for r in replay.routes)


def test_stop_and_down_cut_delayed_answers_short() -> None:
    server = ReplayServer()
    server.start()
    try:
        server.delay("tmdb", 30)
        with pytest.raises(requests.Timeout):
            requests.get(f"{server.tmdb_base}/movie/550", timeout=0.2)
        start = time.monotonic()
        server.down("tmdb")  # joins the handler still waiting out its delay
        assert time.monotonic() - start < 2
        server.up("tmdb")
        server.delay("tmdb", 0)
        assert requests.get(f"{server.tmdb_base}/movie/550", timeout=2).status_code == 200
        server.delay("omdb", 30)
        with pytest.raises(requests.Timeout):
            requests.get(server.omdb_url, timeout=0.2)
    finally:
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 2
    assert [r.status for r in server.requests("tmdb")] == [None, 200]  # the delayed one was dropped
