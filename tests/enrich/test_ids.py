"""Identifiers from names, .nfo files and source metadata, and their precedence
(handlers/enrich/ids.py). Real Internet Archive and yt-dlp metadata from ../shared/fixtures;
names and nfo texts written here as test inputs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from handlers.enrich.ids import (
    Ids,
    ia_meta_xml,
    ids_from_name,
    ids_from_nfo,
    ids_from_source_meta,
    merge_ids,
)
from tests.support.fixtures import FIXTURES

IA = FIXTURES / "internetarchive"
GD_ITEM = IA / "InternetArchiveKit" / "metadata_gd1977-04-23.mtx.seamons.97596.sbeok.flac16.json"
NASA_META_XML = IA / "jjjake_internetarchive" / "nasa_meta.xml"
YTDLP = sorted((FIXTURES / "ytdlp").glob("*/*.info.json"))
IA_JSON = sorted(
    [
        *IA.glob("*/metadata_*.json"),
        *IA.glob("files_xml/*_metadata.json"),
        *IA.glob("oscarotero_Embed/*.body.json"),
    ]
)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


# --- names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (["Movies", "The Matrix (1999) [tmdbid-603]", "The Matrix (1999).mkv"], {"tmdb_id": 603}),  # Jellyfin
        (["The Matrix (1999) [imdbid-tt0133093]", "movie.mkv"], {"imdb_id": "tt0133093"}),
        (["Breaking Bad (2008) [tvdbid-81189]", "Season 01", "S01E01.mkv"], {"tvdb_id": 81189}),
        (["The Matrix (1999) {tmdb-603}", "The Matrix (1999) {imdb-tt0133093}.mkv"],  # Plex
         {"tmdb_id": 603, "imdb_id": "tt0133093"}),
        (["Avatar (2009) [tmdbid=19995]"], {"tmdb_id": 19995}),  # Emby's "="
        (["The.Matrix.1999.TMDBID-603.1080p.mkv"], {"tmdb_id": 603}),  # unbracketed, any case
        (["The.Matrix.1999.tt0133093.1080p.mkv"], {"imdb_id": "tt0133093"}),  # bare, as Radarr reads
        (["New Film (2024) [imdbid-tt12345678].mkv"], {"imdb_id": "tt12345678"}),  # 8 digits
        (["The Matrix (1999)", "The Matrix (1999).mkv"], {}),
        (["Film [imdbid-123456]", "Film [tmdbid-abc].mkv"], {}),  # malformed values ignored
        (["Video-tt01330931x.mkv", "xtt0133093"], {}),  # not a word of its own
    ],
)  # fmt: skip
def test_ids_from_name(parts: list[str], expected: dict[str, Any]) -> None:
    ids = ids_from_name(parts)
    assert {
        f: getattr(ids, f) for f in ("tmdb_id", "imdb_id", "tvdb_id") if getattr(ids, f) is not None
    } == expected
    assert bool(ids) == bool(expected)
    for name in expected:
        assert ids.origins[name].source == "name"
    assert not ids.conflicts


def test_the_file_name_beats_its_folder_and_the_conflict_is_reported() -> None:
    ids = ids_from_name(["The Matrix (1999) [tmdbid-603]", "The Matrix Reloaded (2003) [tmdbid-604].mkv"])
    assert ids.tmdb_id == 604
    assert "Reloaded" in ids.origins["tmdb_id"].detail
    (conflict,) = ids.conflicts
    assert (conflict.field, conflict.kept, conflict.other) == ("tmdb_id", "604", "603")
    assert "603" in str(conflict) and "604" in str(conflict)


def test_the_same_id_twice_is_no_conflict() -> None:
    ids = ids_from_name(["The Matrix (1999) [tmdbid-603]", "The Matrix (1999) [tmdbid-603].mkv"])
    assert ids.tmdb_id == 603 and not ids.conflicts


# --- nfo ---------------------------------------------------------------------------------

KODI_MOVIE_NFO = """<?xml version="1.0" encoding="UTF-8" standalone="yes" ?>
<movie>
    <title>The Matrix</title>
    <year>1999</year>
    <plot>See also https://www.imdb.com/title/tt0234215/ for the sequel.</plot>
    <uniqueid type="tmdb">603</uniqueid>
    <uniqueid type="imdb" default="true">tt0133093</uniqueid>
    <actor><name>Keanu Reeves</name><tmdbid>6384</tmdbid></actor>
</movie>
"""


def test_kodi_movie_nfo_uniqueids() -> None:
    ids = ids_from_nfo(KODI_MOVIE_NFO)
    assert (ids.tmdb_id, ids.imdb_id, ids.tvdb_id, ids.tmdb_kind) == (603, "tt0133093", None, "movie")
    assert ids.origins["imdb_id"].source == "nfo"
    assert "uniqueid" in ids.origins["imdb_id"].detail
    assert not ids.conflicts  # the actor's <tmdbid> and the sequel link in <plot> are not the film's


def test_jellyfin_style_legacy_tags_and_id() -> None:
    nfo = "<movie><title>X</title><imdbid>tt0133093</imdbid><tmdbid>603</tmdbid></movie>"
    ids = ids_from_nfo(nfo)
    assert (ids.tmdb_id, ids.imdb_id) == (603, "tt0133093")
    assert ids_from_nfo("<movie><id>tt0133093</id></movie>").imdb_id == "tt0133093"
    assert not ids_from_nfo("<movie><id>603</id></movie>")  # a bare number names no provider


def test_tvshow_and_episode_nfo() -> None:
    show = ids_from_nfo(
        '<tvshow><title>Breaking Bad</title><uniqueid type="tvdb" default="true">81189</uniqueid>'
        '<uniqueid type="tmdb">1396</uniqueid><uniqueid type="imdb">tt0903747</uniqueid></tvshow>'
    )
    assert (show.tvdb_id, show.tmdb_id, show.imdb_id, show.tmdb_kind, show.scope) == (
        81189, 1396, "tt0903747", "tv", "title",
    )  # fmt: skip
    episode = ids_from_nfo('<episodedetails><uniqueid type="tvdb">349232</uniqueid></episodedetails>')
    assert (episode.tvdb_id, episode.scope) == (349232, "episode")


def test_the_default_uniqueid_wins_a_disagreement_inside_one_nfo() -> None:
    nfo = (
        '<movie><uniqueid type="imdb">tt0000001</uniqueid>'
        '<uniqueid type="imdb" default="true">tt0133093</uniqueid></movie>'
    )
    ids = ids_from_nfo(nfo)
    assert ids.imdb_id == "tt0133093"
    assert [(c.kept, c.other) for c in ids.conflicts] == [("tt0133093", "tt0000001")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://www.imdb.com/title/tt0133093/\n", {"imdb_id": "tt0133093"}),
        ("http://m.imdb.com/title/tt0133093", {"imdb_id": "tt0133093"}),
        ("http://www.imdb.com/Title?0133093", {"imdb_id": "tt0133093"}),  # old form Kodi still reads
        ("https://www.themoviedb.org/movie/603-the-matrix", {"tmdb_id": 603, "tmdb_kind": "movie"}),
        ("https://www.themoviedb.org/tv/1396-breaking-bad", {"tmdb_id": 1396, "tmdb_kind": "tv"}),
        ("https://thetvdb.com/?tab=series&id=81189", {"tvdb_id": 81189}),
        ("https://thetvdb.com/dereferrer/series/81189", {"tvdb_id": 81189}),
        ("https://thetvdb.com/series/breaking-bad", {}),  # a slug is no id
        ("Release notes\n\nno links here", {}),
        ("", {}),
    ],
)
def test_url_nfo(text: str, expected: dict[str, Any]) -> None:
    ids = ids_from_nfo(text)
    got = {f: getattr(ids, f) for f in ("tmdb_id", "imdb_id", "tvdb_id") if getattr(ids, f) is not None}
    if ids.tmdb_kind:
        got["tmdb_kind"] = ids.tmdb_kind
    assert got == expected


def test_combination_nfo_xml_then_url() -> None:
    nfo = "<movie><title>The Matrix</title></movie>\nhttps://www.themoviedb.org/movie/603\n"
    ids = ids_from_nfo(nfo)
    assert (ids.tmdb_id, ids.tmdb_kind) == (603, "movie")
    assert "themoviedb.org/movie/603" in ids.origins["tmdb_id"].detail


def test_scene_nfo_bytes_in_cp437_with_an_imdb_link() -> None:
    art = "▓▒░ GROUP ░▒▓\n  IMDb ....: https://www.imdb.com/title/tt0133093/\n".encode("cp437")
    with pytest.raises(UnicodeDecodeError):
        art.decode("utf-8")
    assert ids_from_nfo(art).imdb_id == "tt0133093"


def test_hostile_or_broken_xml_is_not_expanded() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE movie [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><movie><title>&b;</title>'
        "<uniqueid type='tmdb'>603</uniqueid></movie>"
    )
    assert not ids_from_nfo(bomb)  # defusedxml refuses entity declarations
    assert ids_from_nfo("<movie><uniqueid type='tmdb'>603</uniqueid>").tmdb_id is None  # unclosed


# --- source metadata ---------------------------------------------------------------------


@pytest.mark.parametrize("path", IA_JSON + YTDLP, ids=lambda p: p.name)
def test_recorded_source_metadata_names_no_ids(path: Path) -> None:
    """None of the recorded Internet Archive items or yt-dlp videos is a film with an IMDb
    entry; in particular the Grateful Dead item's per-file ``external-identifier`` values
    (``urn:acoustid:…``) must not be read as the item's ids, nor its links as ids."""
    ids = ids_from_source_meta(load(path))
    assert not ids and not ids.conflicts


def test_recorded_item_has_file_level_external_identifiers_only() -> None:
    item = load(GD_ITEM)
    urns = [f["external-identifier"] for f in item["files"] if "external-identifier" in f]
    assert urns and all(u.startswith("urn:acoustid:") for u in urns)
    assert "external-identifier" not in item["metadata"]


def test_item_external_identifier_urn_imdb() -> None:
    """The recorded item with an item-level ``external-identifier`` as a film on the Archive
    carries it (``urn:imdb:tt0063350``, Night of the Living Dead), a list or a string."""
    item = copy.deepcopy(load(GD_ITEM))
    item["metadata"]["external-identifier"] = ["urn:imdb:tt0063350", "urn:oclc:record:1036830498"]
    ids = ids_from_source_meta(item)
    assert ids.imdb_id == "tt0063350"
    assert ids.origins["imdb_id"].source == "source_meta"
    assert "urn:imdb:tt0063350" in ids.origins["imdb_id"].detail
    assert ids_from_source_meta({"external-identifier": "urn:imdb:tt0063350"}).imdb_id == "tt0063350"


def test_ia_meta_xml_reads_the_recorded_file() -> None:
    meta = ia_meta_xml(NASA_META_XML.read_bytes())
    assert meta["identifier"] == "nasa" and meta["title"] == "NASA Images"
    assert isinstance(meta["updater"], list) and len(meta["updater"]) > 5  # a repeated tag
    assert not ids_from_source_meta(meta)
    assert ia_meta_xml("<files/>") == {} and ia_meta_xml("not xml") == {}
    xml = (
        "<metadata><identifier>night_of_the_living_dead</identifier>"
        "<external-identifier>urn:imdb:tt0063350</external-identifier></metadata>"
    )
    assert ids_from_source_meta(ia_meta_xml(xml)).imdb_id == "tt0063350"


def test_imdb_links_in_a_description() -> None:
    video = copy.deepcopy(load(YTDLP[0]))
    video["description"] += "\n\nIMDb: https://www.imdb.com/title/tt0133093/"
    ids = ids_from_source_meta(video)
    assert ids.imdb_id == "tt0133093" and ids.origins["imdb_id"].detail.endswith("in description")
    labelled = ids_from_source_meta({"description": "A public-domain classic (IMDb tt0063350)."})
    assert labelled.imdb_id == "tt0063350"
    unlabelled = ids_from_source_meta({"description": "catalogue number tt0063350"})
    assert not unlabelled  # a bare tt number in prose is not taken


def test_several_films_in_a_description_are_ambiguous() -> None:
    text = "Double feature: https://www.imdb.com/title/tt0063350/ and https://www.imdb.com/title/tt0054215/"
    ids = ids_from_source_meta({"description": text})
    assert ids.imdb_id is None
    (conflict,) = ids.conflicts
    assert conflict.kept == "(none: ambiguous)" and conflict.other == "tt0054215"


def test_identifiers_outrank_description_links() -> None:
    meta = {
        "external-identifier": "urn:imdb:tt0063350",
        "description": "Remade in 1990: https://www.imdb.com/title/tt0100258/",
    }
    ids = ids_from_source_meta(meta)
    assert ids.imdb_id == "tt0063350"
    assert [(c.kept, c.other) for c in ids.conflicts] == [("tt0063350", "tt0100258")]


# --- precedence --------------------------------------------------------------------------


def test_merge_precedence_name_then_nfo_then_source_meta_with_conflicts() -> None:
    name = ids_from_name(["The Matrix (1999) [tmdbid-603]", "The Matrix (1999).mkv"])
    nfo = ids_from_nfo(
        '<movie><uniqueid type="tmdb">604</uniqueid><uniqueid type="imdb">tt0133093</uniqueid></movie>'
    )
    meta = ids_from_source_meta({"external-identifier": ["urn:imdb:tt0234215"]})
    merged = merge_ids(name, nfo, meta)
    assert (merged.tmdb_id, merged.imdb_id) == (603, "tt0133093")
    assert merged.origins["tmdb_id"].source == "name"
    assert merged.origins["imdb_id"].source == "nfo"
    assert [(c.field, c.kept, c.other) for c in merged.conflicts] == [
        ("tmdb_id", "603", "604"),
        ("imdb_id", "tt0133093", "tt0234215"),
    ]
    assert merged.tmdb_kind is None  # the winning name tag does not say movie or tv
    data = json.loads(json.dumps(merged.to_dict()))
    assert data["tmdb_id"] == 603 and len(data["conflicts"]) == 2


def test_merge_takes_the_tmdb_kind_from_a_layer_agreeing_on_the_id() -> None:
    merged = merge_ids(
        ids_from_name(["Breaking Bad [tmdbid-1396]"]),
        ids_from_nfo("https://www.themoviedb.org/tv/1396"),
    )
    assert (merged.tmdb_id, merged.tmdb_kind) == (1396, "tv") and not merged.conflicts


def test_merge_of_nothing_and_of_mixed_scopes() -> None:
    assert not merge_ids() and not merge_ids(Ids(), Ids())
    episode = ids_from_nfo('<episodedetails><uniqueid type="tvdb">349232</uniqueid></episodedetails>')
    show = ids_from_name(["Breaking Bad [tvdbid-81189]"])
    with pytest.raises(ValueError, match="scopes"):
        merge_ids(show, episode)
    assert merge_ids(episode).scope == "episode"
