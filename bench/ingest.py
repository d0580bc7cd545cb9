"""Ingest throughput of `harbord ingest` against a `b3sum` + `cp` baseline measured in the same run.

Generates real media (an h264/aac mp4 of ~5 MB and a rawvideo mkv of ~1 GB, made with ffmpeg),
derives distinct files from them (unique trailing bytes, so every file is its own object),
then times, on the same warm page cache:

- baseline: ``b3sum`` over the files + ``cp`` of the files into a fresh folder,
- harbord: ``harbord ingest`` (parse, probe, checksum, store, SQLite catalog; whole process
  including start-up) into a fresh state/library, once with the default ``--action keep``
  (the object is a hardlink: what a library on the same filesystem costs) and once with
  ``--action copy`` (a real copy, fsync'd before rename, which ``cp`` does not do),

and prints files/s, GB/s and the ratio harbord/baseline for the small and the large set. The
targets are checked on the default action. For the small set it also times the chain split in
two, ``parse + probe`` only (guessit and MediaInfo, in the CPU process pool) and ``checksum +
store`` only (BLAKE3 and the object store, in the main process), each a whole ``harbord ingest``
with start-up: what each half costs on its own.
Targets (issue "The ingest daemon, end to end"): ratio >= 0.8 on large files, >= 100 small
files/s. Usage: ``python bench/ingest.py [--small 200 --small-mb 5 --large 5 --large-gb 1]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.media import make_large_raw_mkv, make_mp4  # noqa: E402


def derive(template: Path, folder: Path, count: int, stem: str) -> list[Path]:
    """``count`` distinct copies of ``template`` (unique 64-byte tails) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    data = template.read_bytes() if template.stat().st_size < 64 << 20 else None
    out = []
    for i in range(count):
        path = folder / f"{stem}.{i:04d}{template.suffix}"
        if data is not None:
            path.write_bytes(data + f"{i:064d}".encode())
        else:
            shutil.copyfile(template, path)
            with open(path, "ab") as fh:
                fh.write(f"{i:064d}".encode())
        out.append(path)
    return out


def baseline(files: list[Path], dest: Path) -> float:
    """Seconds for ``b3sum`` over the files, then ``cp`` into ``dest`` (batched invocations)."""
    dest.mkdir(parents=True)
    start = time.perf_counter()
    for i in range(0, len(files), 100):
        chunk = [str(p) for p in files[i:i + 100]]
        subprocess.run(["b3sum", *chunk], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cp", *chunk, str(dest)], check=True)
    return time.perf_counter() - start


CHAIN = ("parse", "probe", "checksum", "store")


def harbord(files_dir: Path, work: Path, action: str = "copy",
            chain: tuple[str, ...] = CHAIN) -> tuple[float, dict[str, object]]:
    """Seconds for ``harbord ingest --action ACTION`` of a folder into a fresh state/library,
    with the handler chain ``chain``."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "harbord.toml"
    config.write_text(
        f'[paths]\nstate = "{work / "state"}"\nlibrary = "{work / "library"}"\n'
        f'[[watch]]\npath = "{work / "inbox"}"\n'
        f'[pipeline]\nhandlers = {json.dumps(list(chain))}\n[mqtt]\nenabled = false\n'
    )
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "harbord", "--config", str(config), "ingest", "--action", action,
         "--json", str(files_dir)], capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"harbord ingest failed:\n{run.stderr[-2000:]}\n{run.stdout[-2000:]}")
    return elapsed, json.loads(run.stdout)


def line(name: str, count: int, total: int, seconds: float, base_s: float | None = None) -> None:
    """Print one timing row (and its throughput ratio against the baseline)."""
    ratio = f"  ratio {base_s / seconds:5.2f}" if base_s else ""
    print(f"  {name:34s}: {seconds:7.2f} s {count / seconds:8.1f} files/s "
          f"{total / seconds / 1e9:6.2f} GB/s{ratio}")


def main() -> int:
    """Run the benchmark; exit 0 when both targets are met, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--small-mb", type=float, default=5.0)
    parser.add_argument("--large", type=int, default=5)
    parser.add_argument("--large-gb", type=float, default=1.0)
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    if not shutil.which("b3sum"):
        raise SystemExit("b3sum not found (Debian package b3sum; ./dev bench installs it)")
    scratch = Path(tempfile.mkdtemp(prefix="harbord-bench-", dir=args.dir))
    try:
        tpl = scratch / "tpl"
        tpl.mkdir()
        seconds = max(1.0, args.small_mb * 8 / 6.0)  # ~6 Mbit/s at 1280x720
        small_tpl = make_mp4(tpl / "small.mp4", seconds=seconds, size="1280x720", seed=1)
        large_tpl = make_large_raw_mkv(tpl / "large.mkv", int(args.large_gb * 1e9), seed=2)
        results = {}
        for label, template, count, stem in (
            ("small", small_tpl, args.small, "Show.Name.S01E01.720p.WEB-DL"),
            ("large", large_tpl, args.large, "Movie.Title.2010.2160p.REMUX"),
        ):
            files = derive(template, scratch / label / "in", count, stem)
            for path in files:  # warm the page cache for both sides alike
                with open(path, "rb") as fh:
                    while fh.read(16 << 20):
                        pass
            total = sum(p.stat().st_size for p in files)
            print(f"{label}: {len(files)} files, {total / 1e9:.2f} GB")
            base_s = baseline(files, scratch / label / "cp")
            shutil.rmtree(scratch / label / "cp")
            line("baseline b3sum + cp", len(files), total, base_s)
            runs = {}
            for action in ("keep", "copy"):
                ours_s, out = harbord(scratch / label / "in", scratch / label / action, action)
                bad = [p for p, r in out.items() if r["state"] != "done"]
                assert not bad, f"not ingested: {bad[:3]}"
                shutil.rmtree(scratch / label / action)
                what = "hardlink" if action == "keep" else "copy + fsync"
                line(f"harbord ingest --action {action} ({what})", len(files), total, ours_s, base_s)
                runs[action] = ours_s
            if label == "small":  # where the time goes: the chain split in two
                for part in (("parse", "probe"), ("checksum", "store")):
                    part_s, _ = harbord(scratch / label / "in", scratch / label / "part", "keep", part)
                    shutil.rmtree(scratch / label / "part")
                    line(f"  only {' + '.join(part)}", len(files), total, part_s, base_s)
                    runs["+".join(part)] = part_s
            results[label] = (base_s / runs["keep"], len(files) / runs["keep"])
            shutil.rmtree(scratch / label)
        ok_large = results["large"][0] >= 0.8
        ok_small = results["small"][1] >= 100
        print(f"targets: large ratio >= 0.8: {'PASS' if ok_large else 'FAIL'} ({results['large'][0]:.2f}); "
              f"small >= 100 files/s: {'PASS' if ok_small else 'FAIL'} ({results['small'][1]:.1f})")
        return 0 if ok_large and ok_small else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
