"""Faults in what is dropped: symlinked and hardlinked sources and sidecars, a file replaced
under its name, a damaged object, a hostile ``.info.json``, a symlink loop (issue 10, faults
1, 2, 3, 10, 11). Real files, the real daemon or ``harbord ingest`` as a user runs them."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import blake3
import pytest

from handlers.files.checksum import Checksum
from handlers.files.store import Store
from harbord.context import Context
from harbord.errors import FileReplacedError
from harbord.job import Job
from tests.support.daemon_proc import DaemonProc
from tests.support.media import make_mp4
from tests.support.waits import wait_until

SECRET = b"root:$6$not-for-the-library$:19000:0:99999:7:::\n"


def _b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def _library_bytes(library: Path) -> list[bytes]:
    return [p.read_bytes() for p in library.rglob("*") if p.is_file() and not p.is_symlink()]


@pytest.mark.parametrize("action", ["copy", "move"])
def test_a_symlinked_sidecar_to_a_secret_never_reaches_the_library(tmp_path: Path, action: str) -> None:
    secret = tmp_path / "outside" / "shadow"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    d = DaemonProc(tmp_path / "h", action=action, settle=0.3).start()
    try:
        drop = tmp_path / "s"
        drop.mkdir()
        make_mp4(drop / "SymC.mp4", seed=11)
        (drop / "SymC.en.srt").symlink_to(secret)
        (drop / "SymC.nfo").write_text("<movie><title>x</title></movie>")
        (drop / "SymC.nfo").chmod(0o600)
        os.rename(drop, d.inbox / "s")
        wait_until(lambda: d.status()["jobs"]["done"] >= 2, 60)
        assert SECRET not in _library_bytes(d.library)
        assert not [p for p in d.library.rglob("*") if p.is_symlink()]
        item = json.loads(d.cli("show", "--json", "1").stdout)
        assert not any(k.startswith("subtitles") for k in item["sidecars"]), item["sidecars"]
        nfo = Path(item["sidecars"]["nfo"])
        assert stat.S_IMODE(nfo.stat().st_mode) & 0o077 == 0  # never wider than its 0600 source
        assert "resolves outside the watched folders" in json.dumps(item["parsed"].get("warnings"))
        assert secret.read_bytes() == SECRET and secret.exists()
    finally:
        d.stop()


@pytest.mark.parametrize("action", ["move", "link", "keep", "copy"])
def test_a_hardlinked_source_is_copied_and_the_object_is_read_only(tmp_path: Path, action: str) -> None:
    d = DaemonProc(tmp_path / "h", action=action)
    d.inbox.mkdir(parents=True)
    outside = make_mp4(tmp_path / "outside.mp4", seed=21)
    os.link(outside, d.inbox / "x.mp4")
    want = _b3(outside.read_bytes())
    out = d.cli("ingest", "--action", action, "--json", str(d.inbox / "x.mp4"))
    assert "ingested" in out.stdout, out.stdout + out.stderr
    [obj] = [p for p in d.objects() if p.name.startswith(want)]
    assert obj.stat().st_ino != outside.stat().st_ino
    assert stat.S_IMODE(obj.stat().st_mode) & 0o222 == 0
    with open(outside, "r+b") as fh:  # a later write through the outside name
        fh.write(b"\0" * 64)
    assert _b3(obj.read_bytes()) == want


async def test_a_file_replaced_under_its_name_during_its_job_is_started_over(
    ctx: Context, inbox: Path
) -> None:
    a = make_mp4(inbox / "a.mp4", seed=31)
    b = make_mp4(inbox / "b.tmp.mp4", seed=32)
    with open(b, "r+b") as fh:  # same size as a
        fh.truncate(a.stat().st_size)
    st = a.stat()
    job = Job(id="j1", path=str(a), watch_root=str(inbox), size=st.st_size, mtime=st.st_mtime, action="move")
    hashed = await Checksum().handle(job)
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.rename(b, a)  # B over A: same name, size and mtime
    store = Store.from_context(ctx)
    with pytest.raises(FileReplacedError):
        await store.handle(hashed)
    assert a.exists() and not list(ctx.config.paths.library.rglob(f"{hashed.file_hash}*"))


def test_a_duplicate_never_removes_its_source_against_a_damaged_object(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "h", action="move")
    d.inbox.mkdir(parents=True)
    first = make_mp4(tmp_path / "first.mp4", seed=41)
    content = first.read_bytes()
    d.cli("ingest", "--action", "copy", str(first))
    [obj] = [p for p in d.objects() if p.name.startswith(_b3(content))]
    obj.chmod(0o644)
    obj.write_bytes(content[:-100] + b"x" * 100)  # same size, other bytes
    again = d.inbox / "again.mp4"
    again.write_bytes(content)
    out = d.cli("ingest", "--action", "move", "--json", str(again))
    assert "duplicate" in out.stdout or "ingested" in out.stdout, out.stdout + out.stderr
    survivors = [p for p in [again, *d.objects()] if p.exists() and p.read_bytes() == content]
    assert survivors, "the content exists nowhere"
    assert obj.read_bytes() == content  # the object was repaired from the verified source


def test_a_deeply_nested_info_json_is_a_warning(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "h")
    d.inbox.mkdir(parents=True)
    make_mp4(d.inbox / "Deep.mp4", seed=51)
    (d.inbox / "Deep.info.json").write_text('{"a":' * 200000)
    out = d.cli("ingest", "--json", str(d.inbox))
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    text = json.dumps(rows)
    assert "RecursionError" not in text and "ingested" in text, text


def test_a_symlink_loop_skips_only_that_entry(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "h")
    d.inbox.mkdir(parents=True)
    make_mp4(d.inbox / "c.mp4", seed=61)
    (d.inbox / "c.en.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nHi\n")
    (d.inbox / "a.mkv").symlink_to(d.inbox / "b.mkv")
    (d.inbox / "b.mkv").symlink_to(d.inbox / "a.mkv")
    out = d.cli("ingest", "--json", str(d.inbox), check=False)
    assert "Traceback" not in out.stderr, out.stderr
    text = out.stdout
    assert "ingested" in text, text
    item = json.loads(d.cli("show", "--json", "1").stdout)
    assert "subtitles:en" in item["sidecars"]


def test_dataclass_job_keeps_file_id_through_json() -> None:
    job = dataclasses.replace(Job(id="x", path="/p"), file_id=[1, 2])
    assert Job.from_json(job.to_json()).file_id == [1, 2]


def test_a_symlinked_sidecar_inside_the_watched_folder_is_kept(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "h")
    (d.inbox / "subs").mkdir(parents=True)
    make_mp4(d.inbox / "Film.mp4", seed=71)
    real = d.inbox / "subs" / "film-english.txt"  # not a sidecar name of its own
    real.write_text("1\n00:00:00,000 --> 00:00:01,000\nHi\n")
    (d.inbox / "Film.en.srt").symlink_to(real)
    out = d.cli("ingest", "--json", str(d.inbox / "Film.mp4"))
    assert "ingested" in out.stdout, out.stdout
    item = json.loads(d.cli("show", "--json", "1").stdout)
    kept = Path(item["sidecars"]["subtitles:en"])
    assert kept.read_text() == real.read_text() and not kept.is_symlink()
