"""probe: facts of real media made by ffmpeg/Pillow, and every failure rule on real bad files."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers.files.checksum import Checksum
from handlers.files.naming import NAME_PENDING
from handlers.files.parse import Parse, tags_later
from handlers.files.probe import NO_AV, Probe, _av_facts, _read_facts
from handlers.files.store import Store
from harbord import offload
from harbord.context import Context
from harbord.errors import HandlerError, PermanentError
from harbord.job import Job
from tests.support.media import make_flac, make_jpg_exif, make_mkv, make_mp3, make_mp4, truncate


def job_for(path: Path, media_type: str | None = None) -> Job:
    """A job for ``path`` dropped into its own folder as the watched folder, as the watcher
    makes it: guessit then sees the name only, not pytest's temp folder names."""
    return Job(id="p1", path=str(path), watch_root=str(path.parent), media_type=media_type)


async def probe(path: Path, media_type: str | None = None) -> dict[str, Any]:
    return (await Probe().handle(job_for(path, media_type))).probe


async def test_mp4(tmp_path: Path) -> None:
    facts = await probe(make_mp4(tmp_path / "a.mp4", seconds=1.5, size="320x240"), "movie")
    assert facts["duration"] == pytest.approx(1.5, abs=0.2)
    assert facts["container"] == "MPEG-4" and isinstance(facts["bitrate"], int) and facts["bitrate"] > 0
    [video] = facts["video"]
    assert (video["codec"], video["width"], video["height"]) == ("AVC", 320, 240)
    assert video["frame_rate"] == pytest.approx(25.0) and video["bit_depth"] == 8
    [audio] = facts["audio"]
    assert (audio["codec"], audio["channels"], audio["sample_rate"]) == ("AAC", 2, 48000)
    assert facts["size"] == (tmp_path / "a.mp4").stat().st_size


async def test_mkv_with_subtitles(tmp_path: Path) -> None:
    facts = await probe(make_mkv(tmp_path / "a.mkv", seconds=2.0, subtitles=True), "episode")
    assert facts["duration"] == pytest.approx(2.0, abs=0.2)
    assert facts["container"] == "Matroska"
    assert [v["codec"] for v in facts["video"]] == ["AVC"]
    assert [(a["codec"], a["language"]) for a in facts["audio"]] == [("Vorbis", "en")]
    assert facts["subtitles"] == [{"codec": "UTF-8", "language": "en"}]


async def test_mp3_tags(tmp_path: Path) -> None:
    path = make_mp3(tmp_path / "song.mp3", seconds=1.0, title="Sång 🎵", artist="Band", album="LP")
    facts = await probe(path, "music")
    assert facts["duration"] == pytest.approx(1.0, abs=0.2)
    assert "video" not in facts
    [audio] = facts["audio"]
    assert (audio["codec"], audio["profile"], audio["sample_rate"]) == ("MPEG Audio", "Layer 3", 44100)
    assert facts["tags"] == {"title": "Sång 🎵", "artist": "Band", "album": "LP"}


async def test_flac(tmp_path: Path) -> None:
    facts = await probe(make_flac(tmp_path / "t.flac", seconds=3.0), "music")
    assert facts["duration"] == pytest.approx(3.0, abs=0.2)
    assert facts["container"] == "FLAC"
    assert [(a["codec"], a["sample_rate"], a["bit_depth"]) for a in facts["audio"]] == [
        ("FLAC", 48000, 16)]


async def test_jpg_exif(tmp_path: Path) -> None:
    path = make_jpg_exif(tmp_path / "IMG_0001.jpg", taken="2023:07:14 10:11:12", make="Canon",
                         model="EOS R6", gps=(52.52, 13.405), size=(64, 48))
    facts = await probe(path, "photo")
    assert (facts["width"], facts["height"]) == (64, 48)
    assert facts["taken_at"] == "2023-07-14T10:11:12"
    assert (facts["camera_make"], facts["camera_model"]) == ("Canon", "EOS R6")
    gps = facts["gps"]
    assert gps == {"lat": pytest.approx(52.52, abs=1e-4), "lon": pytest.approx(13.405, abs=1e-4)}


async def test_jpg_southern_western_and_missing_tags(tmp_path: Path) -> None:
    south = await probe(make_jpg_exif(tmp_path / "s.jpg", gps=(-33.8568, -151.2153)), "photo")
    assert south["gps"] == {"lat": pytest.approx(-33.8568, abs=1e-4),
                            "lon": pytest.approx(-151.2153, abs=1e-4)}
    bare_jpg = make_jpg_exif(tmp_path / "b.jpg", taken=None, make=None, model=None, gps=None)
    bare = await probe(bare_jpg, "photo")
    assert (bare["width"], bare["height"]) == (64, 48)
    assert not {"gps", "taken_at", "camera_make", "camera_model"} & set(bare)


async def test_kind_from_extension_when_parse_did_not_run(tmp_path: Path) -> None:
    facts = await probe(make_mp3(tmp_path / "x.mp3"), None)
    assert facts["audio"][0]["codec"] == "MPEG Audio"
    noise = tmp_path / "noise.mkv"
    noise.write_bytes(os.urandom(10_000))
    await expect_permanent(noise, None, NO_AV)


async def test_other_files_get_basic_facts(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello", encoding="utf-8")
    assert await probe(path, "other") == {"size": 5, "mime": "text/plain"}


async def expect_permanent(path: Path, media_type: str | None, reason: str) -> None:
    with pytest.raises(PermanentError) as err:
        await probe(path, media_type)
    assert err.value.message == reason


async def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mkv"
    path.touch()
    await expect_permanent(path, "movie", "empty file (0 bytes)")


async def test_truncated_mp4_without_moov(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "cut.mp4", seconds=1.0)
    truncate(path, path.stat().st_size // 2)  # moov sits at the end: lost
    await expect_permanent(path, "movie", NO_AV)
    assert NO_AV == "no audio or video track found; corrupt or not a media file"


async def test_random_bytes_named_mkv_mp3_and_jpg(tmp_path: Path) -> None:
    for name, media_type in (("noise.mkv", "video"), ("noise.mp3", "music")):
        path = tmp_path / name
        path.write_bytes(os.urandom(200_000))
        await expect_permanent(path, media_type, NO_AV)
    jpg = tmp_path / "noise.jpg"
    jpg.write_bytes(os.urandom(50_000))
    await expect_permanent(jpg, "photo", "no image data or EXIF found; corrupt or not a photo")


async def test_file_deleted_before_the_stage(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "gone.mp4")
    job = await Parse().handle(job_for(path))
    path.unlink()
    with pytest.raises(PermanentError, match=r"^file disappeared$"):
        await Probe().handle(job)


async def test_broken_symlink_and_directory(tmp_path: Path) -> None:
    link = tmp_path / "dangling.mkv"
    link.symlink_to(tmp_path / "nowhere.mkv")
    await expect_permanent(link, "movie", "file disappeared")
    folder = tmp_path / "folder.mkv"
    folder.mkdir()
    await expect_permanent(folder, "movie", "not a regular file")


@pytest.fixture
def locked_file() -> Iterator[Path]:
    """A real mp4 with mode 000 in a world-traversable folder (pytest's tmp_path is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="harbord-probe-"))
    folder.chmod(0o755)
    path = make_mp4(folder / "locked.mp4")
    path.chmod(0)
    yield path
    shutil.rmtree(folder)


def _as_nobody(fn: Callable[[], None]) -> str:
    """Run ``fn`` in a forked child that dropped root to uid/gid 65534; returns what it raised.

    Root ignores mode 000, so the only honest way to meet EACCES as root is to stop being root.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        os.close(read_end)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            fn()
            result = "no error"
        except HandlerError as err:
            result = f"{type(err).__name__}: {err.message}"
        except BaseException as err:
            result = f"unexpected {err!r}"
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        out = fh.read().decode()
    os.waitpid(pid, 0)
    return out


def test_permission_denied(locked_file: Path) -> None:
    def run() -> None:
        asyncio.run(Probe().handle(job_for(locked_file, "movie")))

    if os.geteuid() == 0:
        outcome = _as_nobody(run)
    else:
        try:
            run()
            outcome = "no error"
        except HandlerError as err:
            outcome = f"{type(err).__name__}: {err.message}"
    assert outcome == "PermanentError: cannot read: permission denied"


async def test_through_the_process_pool(tmp_path: Path) -> None:
    """guessit and pymediainfo run in a spawned process: arguments and results must pickle."""
    offload.configure(1)
    try:
        job = await Parse().handle(job_for(make_mkv(tmp_path / "Show.S01E02.mkv")))
        job = await Probe().handle(job)
    finally:
        offload.shutdown()
    assert job.media_type == "episode" and job.parsed["episode"] == 2
    assert job.probe["video"][0]["codec"] == "AVC"


async def test_music_is_named_by_its_tags_else_by_its_name(ctx: Context, inbox: Path) -> None:
    """With probe after parse in the chain, parse leaves an audio name to probe: the tags name a
    tagged mp3's item (no guessit), guessit names one without a title tag; both catalogued."""
    album = inbox / "Band - LP"
    album.mkdir()
    tagged = make_mp3(album / "01 - track one.mp3", title="Sång 🎵", artist="Band", album="LP")
    bare = make_mp3(album / "Some Song.mp3")
    parse, probe = Parse.from_context(ctx), Probe.from_context(ctx)
    assert parse.audio_names_later
    items = {}
    for path in (tagged, bare):
        st = path.stat()
        job = Job(id=path.stem, path=str(path), size=st.st_size, mtime=st.st_mtime, action="copy",
                  watch_root=str(inbox))
        parsed = await parse.handle(job)
        assert parsed.media_type == "music" and parsed.parsed[NAME_PENDING] == f"Band - LP/{path.name}"
        job = await Store.from_context(ctx).handle(await Checksum().handle(await probe.handle(parsed)))
        assert NAME_PENDING not in job.parsed
        items[path] = ctx.catalog.get_item(job.item_id or 0)
    song = items[tagged]
    assert (song["title"], song["media_type"]) == ("Sång 🎵", "music")
    assert (song["parsed"]["artist"], song["parsed"]["album"]) == ("Band", "LP")
    assert "guessit_title" not in song["parsed"] and "mimetype" not in song["parsed"]  # guessit never ran
    other = items[bare]
    assert (other["title"], other["media_type"]) == ("Some Song", "music")  # from the name
    assert other["parsed"]["container"] == "mp3" and other["parsed"]["mimetype"] == "audio/mpeg"


async def test_music_tags_win_over_a_parsed_name(tmp_path: Path) -> None:
    """A chain without the hand-off (parse ran guessit): the title tag still wins, guessit's kept."""
    path = make_mp3(tmp_path / "Artist - Song.mp3", title="Real Title", artist="Real Artist")
    job = await Probe().handle(await Parse().handle(job_for(path)))
    assert (job.parsed["title"], job.parsed["guessit_title"]) == ("Real Title", "Artist")
    assert job.parsed["artist"] == "Real Artist"
    assert tags_later(["parse", "probe", "checksum", "store"]) and tags_later(["parse", "probe"])
    assert not tags_later(["parse", "checksum", "store", "probe"]) and not tags_later(["parse", "store"])
    assert not tags_later(["probe", "parse", "store"])


async def test_music_names_through_the_process_pool(tmp_path: Path) -> None:
    offload.configure(1)
    try:
        parse = Parse(audio_names_later=True)
        tagged = await Probe().handle(await parse.handle(job_for(make_mp3(tmp_path / "a.mp3", title="T"))))
        bare = await Probe().handle(await parse.handle(job_for(make_mp3(tmp_path / "Tune.mp3"))))
    finally:
        offload.shutdown()
    assert (tagged.parsed["title"], bare.parsed["title"]) == ("T", "Tune")


def test_mediainfo_reads_the_opened_file_even_if_its_name_was_swapped(tmp_path: Path) -> None:
    """MediaInfo opens a UTF-8 name itself (fastest); if the name meanwhile names another file,
    the file opened first is read through its descriptor instead."""
    path = make_mp3(tmp_path / "song.mp3", title="First")
    other = make_mp3(tmp_path / "other.mp3", title="Second")
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        assert _read_facts(_av_facts, str(path), fd, st)["tags"]["title"] == "First"
        os.replace(other, path)  # renamed over it after probe opened it
        assert _read_facts(_av_facts, str(path), fd, st)["tags"]["title"] == "First"
    finally:
        os.close(fd)
