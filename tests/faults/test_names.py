"""A file name that is not valid UTF-8 (``b'x\\xff.mp4'``) is stored losslessly and ingests like
any other: the daemon starts and reconciles it, a running daemon queues it, ``harbord ingest
FOLDER`` does the rest of the folder too (issue 10, fault 5)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import blake3

from tests.support.daemon_proc import DaemonProc
from tests.support.media import make_mp4
from tests.support.waits import wait_until

ODD = b"x\xff.mp4"


def _odd(folder: Path, seed: int) -> Path:
    path = Path(os.fsdecode(os.path.join(os.fsencode(folder), ODD)))
    make_mp4(path, seed=seed)
    return path


def test_an_invalid_utf8_name_is_reconciled_at_start_and_queued_while_running(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "h", action="move")
    d.inbox.mkdir(parents=True)
    first = _odd(d.inbox, 1)
    want = blake3.blake3(first.read_bytes()).hexdigest()
    d.start()
    try:
        wait_until(lambda: d.status()["jobs"]["done"] == 1, 60)
        assert not first.exists() and any(p.name.startswith(want) for p in d.objects())
        sub = d.inbox / "later"
        sub.mkdir()
        second = _odd(sub, 2)
        wait_until(lambda: d.status()["jobs"]["done"] == 2, 60)
        assert not second.exists()
        status = d.cli("status", "--json")
        assert status.returncode == 0 and "Traceback" not in status.stderr
        shown = d.cli("show", "--json", "1")
        assert shown.returncode == 0, shown.stderr
        files = json.loads(shown.stdout)["files"]
        assert files and os.fsencode(files[0]["path"]).endswith(ODD)  # lossless
    finally:
        assert d.stop() == 0
    assert b"Traceback" not in d.log.read_bytes()


def test_ingest_folder_with_an_invalid_utf8_name_does_every_file(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "h")
    d.inbox.mkdir(parents=True)
    _odd(d.inbox, 3)
    make_mp4(d.inbox / "plain.mp4", seed=4)
    out = d.cli("ingest", "--json", str(d.inbox), check=False)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stdout.count("ingested") == 2, out.stdout
