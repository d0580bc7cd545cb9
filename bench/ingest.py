"""Ingest throughput of `harbord ingest` as ratios against baselines measured in the same run.

Generates real media (an h264/aac mp4 of ~5 MB and a rawvideo mkv of ~1 GB, made with ffmpeg),
derives distinct files from them (unique trailing bytes, so every file is its own object), and
times, on the same warm page cache, interleaved in ``--repeat`` rounds (a ratio is the median
of its rounds' ratios; every harbord figure is a whole ``harbord ingest`` process, start-up
included, into a fresh state/library; the short chain is parse + probe + checksum + store):

- large and small: ``--action keep`` (on ext4 a hardlink) against ``b3sum`` + ``ln``; ``--action
  copy`` (fsync'd before rename) against ``b3sum`` + ``cp`` + ``sync`` of each copy and the
  folder. Targets: >= 0.8x each.
- small: the short chain against the libraries' floor on the same files: guessit on every name
  and MediaInfo on every file in a plain ``multiprocessing.Pool(2)``, then ``b3sum``
  (:data:`common.LIBS_FLOOR`). Target: >= 0.8x. The default chain (embed and index included) is
  reported against the same floor.
- engine: ``--tiny`` files of 64 bytes through a ``checksum + store`` chain (``[pipeline]
  handlers``, as for every partial chain here) against a plain Python loop that hashes
  (blake3), hardlinks and inserts one SQLite row per file, one transaction per file, WAL,
  ``synchronous=NORMAL`` (:data:`common.ENGINE_FLOOR`). Target: >= 0.5x.

``--split`` also times the small set's chain in two: ``parse + probe`` (against the libraries'
floor) and ``checksum + store`` (against ``b3sum`` + ``ln``), reported.
Prints each ratio with PASS/FAIL and a Markdown table; exit 0 when every target is met.
Usage: ``python bench/ingest.py [--small 200 --small-mb 5 --large 5 --large-gb 1 --tiny 1000
--repeat 3 --split --no-large]``. Needs ``b3sum`` (Debian package; ``./dev bench`` installs it).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    ENGINE_FLOOR,
    LIBS_FLOOR,
    Section,
    Target,
    b3sum_cp_sync,
    b3sum_ln,
    derive,
    harbord_ingest,
    need,
    python_script,
    report,
    tiny_files,
    warm,
)

from tests.support.media import make_large_raw_mkv, make_mp4


def link_and_copy(section: Section, src: Path, files: list[Path], out: Path,
                  targets: list[Target]) -> None:
    """keep vs b3sum + ln and copy vs b3sum + cp + sync, each >= 0.8x."""
    ln = section.add("b3sum + ln", lambda: b3sum_ln(files, out / "ln"), out / "ln")
    keep = section.add("keep", lambda: harbord_ingest(src, out / "keep", "keep"), out / "keep")
    cp = section.add("b3sum + cp + sync", lambda: b3sum_cp_sync(files, out / "cp"), out / "cp")
    copy = section.add("copy", lambda: harbord_ingest(src, out / "copy", "copy"), out / "copy")
    targets += [Target(section.name, keep, ln, 0.8), Target(section.name, copy, cp, 0.8)]


def main() -> int:
    """Run the benchmark; exit 0 when every target is met, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--small-mb", type=float, default=5.0)
    parser.add_argument("--large", type=int, default=5)
    parser.add_argument("--large-gb", type=float, default=1.0)
    parser.add_argument("--tiny", type=int, default=1000, help="64-byte files for the engine figure")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each contender (median)")
    parser.add_argument("--split", action="store_true", help="also time the small chain in two")
    parser.add_argument("--no-large", action="store_true", help="skip the large set")
    parser.add_argument("--no-default-chain", action="store_true", help="skip the default chain")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    need("b3sum", "b3sum")
    scratch = Path(tempfile.mkdtemp(prefix="harbord-bench-", dir=args.dir))
    sections: list[Section] = []
    targets: list[Target] = []
    try:
        tpl = scratch / "tpl"
        tpl.mkdir()

        # small: 5 MB episodes
        seconds = max(1.0, args.small_mb * 8 / 6.0)  # ~6 Mbit/s at 1280x720
        small_tpl = make_mp4(tpl / "small.mp4", seconds=seconds, size="1280x720", seed=1)
        src = scratch / "small" / "in"
        files = derive(small_tpl, src, args.small, "Show.Name.S01E01.720p.WEB-DL")
        small = Section("small", len(files), sum(p.stat().st_size for p in files))
        out = scratch / "small" / "out"
        link_and_copy(small, src, files, out, targets)
        floor = small.add("guessit + MediaInfo Pool(2) + b3sum", lambda: python_script(LIBS_FLOOR, str(src)))
        keep = small.contenders[1]
        targets.append(Target("small", keep, floor, 0.8))
        if not args.no_default_chain:
            full = small.add("keep, default chain", lambda: harbord_ingest(
                src, out / "full", "keep", None, strict=False), out / "full")
            targets.append(Target("small", full, floor, None))
        if args.split:
            ln = small.contenders[0]
            for part, against in ((("parse", "probe"), floor), (("checksum", "store"), ln)):
                name = "keep, only " + " + ".join(part)
                work = out / "+".join(part)
                part_c = small.add(name, lambda w=work, c=part: harbord_ingest(src, w, "keep", c), work)
                targets.append(Target("small", part_c, against, None))
        warm(files)
        small.measure(args.repeat)
        sections.append(small)
        shutil.rmtree(scratch / "small")

        # engine: 64-byte files, checksum + store only
        src = scratch / "tiny" / "in"
        files = tiny_files(src, args.tiny)
        tiny = Section("engine", len(files), sum(p.stat().st_size for p in files))
        out = scratch / "tiny" / "out"
        plain = tiny.add("blake3 + link + SQLite row per file", lambda: python_script(
            ENGINE_FLOOR, str(src), str(out / "plain")), out / "plain")
        engine = tiny.add("keep, checksum + store", lambda: harbord_ingest(
            src, out / "engine", "keep", ("checksum", "store")), out / "engine")
        targets.append(Target("engine", engine, plain, 0.5))
        warm(files)
        tiny.measure(args.repeat)
        sections.append(tiny)
        shutil.rmtree(scratch / "tiny")

        # large: 1 GB films
        if not args.no_large:
            large_tpl = make_large_raw_mkv(tpl / "large.mkv", int(args.large_gb * 1e9), seed=2)
            src = scratch / "large" / "in"
            files = derive(large_tpl, src, args.large, "Movie.Title.2010.2160p.REMUX")
            large_tpl.unlink()
            large = Section("large", len(files), sum(p.stat().st_size for p in files))
            link_and_copy(large, src, files, scratch / "large" / "out", targets)
            warm(files)
            large.measure(args.repeat)
            sections.append(large)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    command = "python bench/ingest.py " + " ".join(sys.argv[1:])
    return 0 if report(sections, targets, command.strip()) else 1


if __name__ == "__main__":
    sys.exit(main())
