"""`harbord ingest` of a tagged music collection against beets' `beet import`, in the same run.

Makes ``--count`` tagged mp3 files (ffmpeg: title/artist/album/album_artist/track/date ID3
tags, ten tracks an album folder, ``--seconds`` of LAME 128 kbit/s each; see
:func:`common.tagged_mp3s`) and times, interleaved, in ``--repeat`` rounds (the median of the
rounds' ratios counts), on the same warm page cache, every run into a fresh library:

- beets: ``beet import -A -q`` (no autotagging, quiet) with ``copy: yes``, ``write: no``, no
  plugins, its own library database and music folder in a temp folder (``BEETSDIR`` there too),
- harbord: ``harbord ingest --action copy`` of the same folder with the short chain (parse +
  probe + checksum + store), and with the default chain (embed and index included; reported).

Target (issue 10): harbord's short chain >= 1.0x beets (ratio = beets seconds / harbord
seconds). Before the runs each side is run once untimed (Python's bytecode caches, a sanity
check: every file is in beets' library, every harbord item is music titled from its tags).

beets is installed by this script into a venv of its own (``--beets-venv``, default
``$XDG_CACHE_HOME/harbord-bench/beets-venv``), never into harbord's: ``--beets`` names the pip
requirement (default ``beets==2.14.1``).
Usage: ``python bench/beets.py [--count 200 --seconds 10 --repeat 5]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Section, Target, harbord_ingest, report, run, tagged_mp3s, warm

BEETS = "beets==2.14.1"


def beets_venv(venv: Path, requirement: str) -> Path:
    """The ``beet`` executable of ``venv``, made (``python -m venv`` + pip) when missing or
    holding another requirement than ``requirement``."""
    beet, stamp = venv / "bin" / "beet", venv / ".harbord-bench-requirement"
    if beet.exists() and stamp.exists() and stamp.read_text() == requirement:
        return beet
    print(f"installing {requirement} into {venv}", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", requirement])
    stamp.write_text(requirement)
    return beet


def beets_config(work: Path) -> tuple[Path, dict[str, str]]:
    """beets' config for a fresh library under ``work`` and the environment to run it in."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.yaml"
    config.write_text(
        f"directory: {work / 'music'}\nlibrary: {work / 'library.db'}\nplugins: []\nthreaded: yes\n"
        "import:\n  copy: yes\n  write: no\n  autotag: no\n  quiet: yes\n  resume: no\n"
        "  incremental: no\n  log:\n"
    )
    return config, {**os.environ, "BEETSDIR": str(work / "beetsdir")}


def beet_import(beet: Path, src: Path, work: Path) -> None:
    """``beet import -A -q SRC`` into a fresh library under ``work``."""
    config, env = beets_config(work)
    run([str(beet), "-c", str(config), "import", "-A", "-q", str(src)], env=env, stdin=subprocess.DEVNULL)


def check_beets(work: Path, count: int) -> None:
    """Every file is an item of beets' library, copied into its music folder."""
    with sqlite3.connect(work / "library.db") as db:
        items = db.execute("SELECT count(*) FROM items").fetchone()[0]
    copied = sum(1 for p in (work / "music").rglob("*.mp3"))
    if items != count or copied != count:
        raise SystemExit(f"beets imported {items} items, copied {copied} files, of {count}")


def check_harbord(work: Path, count: int) -> None:
    """Every harbord item is music titled by its tags (``Song NNN of Album NN``)."""
    with sqlite3.connect(work / "state" / "harbord.db") as db:  # see common.harbord_config
        rows = db.execute("SELECT title, media_type FROM items").fetchall()
    good = [t for t, kind in rows if kind == "music" and t and t.startswith("Song ")]
    if len(good) != count:
        raise SystemExit(f"harbord: {len(good)} of {count} items are music titled by their tags: {rows[:3]}")


def main() -> int:
    """Run the comparison; exit 0 when harbord's short chain is at least as fast as beets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each mp3")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (median)")
    parser.add_argument("--no-default-chain", action="store_true", help="skip the default chain")
    parser.add_argument("--beets", default=BEETS, help="pip requirement for beets")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    parser.add_argument("--beets-venv", type=Path, default=cache / "harbord-bench" / "beets-venv")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    beet = beets_venv(args.beets_venv, args.beets)
    version = run([str(beet), "version"], env={**os.environ, "BEETSDIR": tempfile.mkdtemp()}).stdout
    print(next((line for line in version.splitlines() if line.startswith("beets")), "beets"), flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="harbord-bench-beets-", dir=args.dir))
    try:
        src = scratch / "music"
        files = tagged_mp3s(src, args.count, args.seconds)
        out = scratch / "out"
        section = Section("music", len(files), sum(p.stat().st_size for p in files))
        beets = section.add("beet import -A -q", lambda: beet_import(beet, src, out / "beets"), out / "beets")
        short = section.add("copy, short chain", lambda: harbord_ingest(src, out / "short", "copy"),
                            out / "short")
        targets = [Target("music", short, beets, 1.0)]
        if not args.no_default_chain:
            full = section.add("copy, default chain", lambda: harbord_ingest(
                src, out / "full", "copy", None, strict=False), out / "full")
            targets.append(Target("music", full, beets, None))
        warm(files)
        beet_import(beet, src, out / "beets")  # untimed: bytecode caches, and a sanity check
        check_beets(out / "beets", len(files))
        harbord_ingest(src, out / "short", "copy")
        check_harbord(out / "short", len(files))
        shutil.rmtree(out)
        section.measure(args.repeat)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    command = "python bench/beets.py " + " ".join(sys.argv[1:])
    return 0 if report([section], targets, command.strip()) else 1


if __name__ == "__main__":
    sys.exit(main())
