"""store keeps an item's sidecars beside its object: names, actions, shared folder files,
conflicts between duplicates, and sidecars that vanish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handlers.files.checksum import Checksum
from handlers.files.parse import Parse
from handlers.files.sidecar_store import library_name
from handlers.files.store import Store
from harbord.context import Context
from harbord.errors import Skip
from harbord.job import Job
from tests.support.media import make_jpg_exif, make_mp4

SRT = "1\n00:00:01,000 --> 00:00:02,000\nHello\n"


def drop_episode(folder: Path, stem: str = "Show.Name.S01E02", seed: int = 70) -> Path:
    """An episode with its own subtitles, forced subtitles and .info.json, in ``folder``."""
    media = make_mp4(folder / f"{stem}.mp4", seed=seed)
    (folder / f"{stem}.en.srt").write_text(SRT)
    (folder / f"{stem}.en.forced.srt").write_text(SRT.replace("Hello", "Forced"))
    (folder / f"{stem}.info.json").write_text(json.dumps({"id": "x1", "title": "A Title"}))
    return media


async def ready(ctx: Context, path: Path, action: str, job_id: str = "j1") -> Job:
    """The job as parse and checksum leave it for store (settle facts from stat)."""
    st = path.stat()
    job = Job(id=job_id, path=str(path), size=st.st_size, mtime=st.st_mtime, action=action,
              watch_root=str(path.parent))
    return await Checksum().handle(await Parse.from_context(ctx).handle(job))


async def run(ctx: Context, path: Path, action: str, job_id: str = "j1") -> Job:
    """parse, checksum and store ``path`` with ``action``."""
    return await Store.from_context(ctx).handle(await ready(ctx, path, action, job_id))


async def test_move_keeps_sidecars_beside_the_object_and_empties_the_drop_folder(
    ctx: Context, inbox: Path
) -> None:
    media = drop_episode(inbox)
    make_jpg_exif(inbox / "poster.jpg")  # folder art: shared by every file of the folder
    out = await run(ctx, media, "move")
    h = out.file_hash
    folder = Path(out.object_path or "").parent
    assert sorted(p.name for p in folder.iterdir()) == sorted([
        f"{h}.mp4", f"{h}.en.srt", f"{h}.en.forced.srt", f"{h}.info.json", f"{h}-poster.jpg"])
    assert (folder / f"{h}.en.forced.srt").read_text() == SRT.replace("Hello", "Forced")
    # The file's own sidecars went with it; the folder's poster stays for its other files.
    assert sorted(p.name for p in inbox.iterdir()) == ["poster.jpg"]
    item = ctx.catalog.get_item(out.item_id or 0)
    assert item is not None and item["sidecars"] == {
        "subtitles:en": str(folder / f"{h}.en.srt"),
        "subtitles:en.forced": str(folder / f"{h}.en.forced.srt"),
        "info_json": str(folder / f"{h}.info.json"),
        "cover": str(folder / f"{h}-poster.jpg"),
    }
    assert out.sidecars == item["sidecars"] and "warnings" not in out.parsed
    # Left alone in the folder, the poster is not taken for a photo, and the moved subtitles'
    # own jobs (queued when they arrived) end ignored, not failed.
    for leftover in (inbox / "poster.jpg", inbox / "Show.Name.S01E02.en.srt"):
        with pytest.raises(Skip) as skip:
            await Parse.from_context(ctx).handle(Job(id="p", path=str(leftover)))
        assert skip.value.outcome == "ignored" and f"sidecar of item {out.item_id}" in skip.value.reason


@pytest.mark.parametrize("action", ["keep", "copy", "link"])
async def test_other_actions_leave_the_sidecars_in_place(ctx: Context, inbox: Path, action: str) -> None:
    media = drop_episode(inbox)
    before = sorted(p.name for p in inbox.iterdir())
    out = await run(ctx, media, action)
    assert sorted(p.name for p in inbox.iterdir()) == before
    kept = Path(out.sidecars["subtitles:en"])
    assert kept.parent == Path(out.object_path or "").parent and kept.read_text() == SRT
    if action == "copy":
        assert kept.stat().st_ino != (inbox / "Show.Name.S01E02.en.srt").stat().st_ino


async def test_a_duplicate_adds_missing_sidecars_and_never_loses_a_different_one(
    ctx: Context, tmp_path: Path
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    one = make_mp4(first / "Movie.2001.mp4", seed=71)
    (first / "Movie.2001.en.srt").write_text(SRT)
    out1 = await run(ctx, one, "move", "j1")
    two = second / "Movie.2001.mp4"
    two.write_bytes(Path(out1.object_path or "").read_bytes())
    (second / "Movie.2001.en.srt").write_text(SRT.replace("Hello", "Bonjour"))  # differs
    (second / "Movie.2001.nfo").write_text("<movie><title>Movie</title></movie>")  # new kind
    with pytest.raises(Skip) as skip:
        await run(ctx, two, "move", "j2")
    dup = skip.value.job
    assert skip.value.outcome == "duplicate" and dup is not None and dup.item_id == out1.item_id
    item = ctx.catalog.get_item(out1.item_id or 0)
    assert item is not None and set(item["sidecars"]) == {"subtitles:en", "nfo"}
    assert Path(item["sidecars"]["subtitles:en"]).read_text() == SRT  # the first one kept
    # The different subtitles stay where they were, with a warning naming them.
    assert sorted(p.name for p in second.iterdir()) == ["Movie.2001.en.srt"]
    [warning] = dup.parsed["warnings"]
    assert str(second / "Movie.2001.en.srt") in warning and "left in place" in warning


async def test_a_sidecar_that_vanished_is_a_warning_not_a_failure(ctx: Context, inbox: Path) -> None:
    media = drop_episode(inbox)
    job = await ready(ctx, media, "move")
    (inbox / "Show.Name.S01E02.info.json").unlink()  # gone between parse and store
    out = await Store.from_context(ctx).handle(job)
    assert set(out.sidecars) == {"subtitles:en", "subtitles:en.forced"} and not media.exists()
    [warning] = out.parsed["warnings"]
    assert "Show.Name.S01E02.info.json" in warning and "not kept" in warning


@pytest.mark.parametrize(("kind", "source", "name"), [
    ("subtitles:pt-BR.sdh", "/in/x.pt-BR.sdh.srt", "h.pt-br.sdh.srt"),
    ("subtitles:und.720p:ass", "/in/x.720p.ass", "h.und.720p.ass"),
    ("ia_meta", "/in/item_meta.xml", "h_meta.xml"),
    ("cover", "/in/folder.PNG", "h-poster.png"),
    ("xmp", "/in/x.xmp", "h.xmp"),
])
def test_library_names(kind: str, source: str, name: str) -> None:
    assert library_name(Path("/lib/objects/ab/h.mkv"), kind, source) == Path("/lib/objects/ab") / name


@pytest.mark.parametrize("action", ["keep", "move"])
async def test_a_sidecar_arriving_after_its_file_was_stored_is_kept_with_its_item(
    ctx: Context, inbox: Path, action: str
) -> None:
    media = make_mp4(inbox / "Movie.Title.2004.mp4", seed=72)
    out = await run(ctx, media, action)
    assert out.sidecars == {}
    late = inbox / "Movie.Title.2004.de.srt"  # fetched later by a subtitle tool
    late.write_text(SRT.replace("Hello", "Hallo"))
    with pytest.raises(Skip) as skip:
        await Parse.from_context(ctx).handle(Job(id="late", path=str(late), action=action))
    assert skip.value.outcome == "ignored"
    assert f"kept as the subtitles:de sidecar of item {out.item_id}" in skip.value.reason
    kept = Path(out.object_path or "").with_suffix(".de.srt")
    assert kept.read_text() == SRT.replace("Hello", "Hallo")
    item = ctx.catalog.get_item(out.item_id or 0)
    assert item is not None and item["sidecars"] == {"subtitles:de": str(kept)}
    assert late.exists() == (action == "keep")  # move takes it out of the drop folder


async def test_a_sidecar_of_a_file_not_stored_yet_is_left_to_that_file(ctx: Context, inbox: Path) -> None:
    make_mp4(inbox / "Other.Movie.2010.mp4", seed=73)
    early = inbox / "Other.Movie.2010.en.srt"
    early.write_text(SRT)
    with pytest.raises(Skip) as skip:
        await Parse.from_context(ctx).handle(Job(id="early", path=str(early), action="move"))
    assert skip.value.reason == f"sidecar of {inbox / 'Other.Movie.2010.mp4'}" and early.exists()


async def test_store_re_run_after_a_crash_that_moved_the_sidecars_already(ctx: Context, inbox: Path) -> None:
    media = drop_episode(inbox)
    job = await ready(ctx, media, "move")
    first = await Store.from_context(ctx).handle(job)
    again = await Store.from_context(ctx).handle(job)  # the job record as it stood before store
    assert again.sidecars == first.sidecars and "warnings" not in again.parsed
    assert list(inbox.iterdir()) == []


async def test_cover_art_arriving_after_its_video_left_joins_it(ctx: Context, inbox: Path) -> None:
    out = await run(ctx, make_mp4(inbox / "Movie.Title.2004.mp4", seed=74), "move")
    late = make_jpg_exif(inbox / "Movie.Title.2004-poster.jpg")
    with pytest.raises(Skip) as skip:
        await Parse.from_context(ctx).handle(Job(id="late", path=str(late), action="move"))
    assert f"kept as the cover sidecar of item {out.item_id}" in skip.value.reason
    assert Path(out.object_path or "").with_name(f"{out.file_hash}-poster.jpg").exists()
    assert list(inbox.iterdir()) == []
    # a picture named after no stored video is a photo
    photo = make_jpg_exif(inbox / "Movie.Other.jpg")
    job = await Parse.from_context(ctx).handle(Job(id="photo", path=str(photo), action="move"))
    assert job.media_type == "photo"


async def test_in_a_photos_folder_a_picture_beside_a_video_is_a_photo(ctx: Context, inbox: Path) -> None:
    video = make_mp4(inbox / "IMG_0001.mp4", seed=75)  # a phone's live photo: picture + clip
    picture = make_jpg_exif(inbox / "IMG_0001.jpg")
    parse = Parse.from_context(ctx)
    clip = await parse.handle(Job(id="v", path=str(video), source="photos", watch_root=str(inbox)))
    still = await parse.handle(Job(id="p", path=str(picture), source="photos", watch_root=str(inbox)))
    assert clip.media_type == "video" and "cover" not in clip.sidecars
    assert still.media_type == "photo"
    # elsewhere the same picture is the video's cover art
    with pytest.raises(Skip):
        await parse.handle(Job(id="p2", path=str(picture), source="inbox", watch_root=str(inbox)))
