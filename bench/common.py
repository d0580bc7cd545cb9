"""Helpers shared by the benchmarks under ``bench/``: test media, ``harbord ingest`` runs,
baselines, interleaved repeats and the ratio table. Nothing to run on its own.

Every figure a target is checked on is a ratio of two wall-clock times measured in the same
run, on the same files and the same warm page cache: ``baseline seconds / harbord seconds``
(>= 1 means harbord is as fast as the baseline). Contenders are run interleaved in rounds (A B
C, A B C, ...); a target's ratio is the median of its rounds' ratios, so a slow spell of the
shared machine hits both sides of a ratio alike rather than one of them.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHORT_CHAIN = ("parse", "probe", "checksum", "store")
"""The chain without embed and index (``[pipeline] handlers``); None below means the default."""


# --- media -----------------------------------------------------------------------------------

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


def tiny_files(folder: Path, count: int, size: int = 64) -> list[Path]:
    """``count`` distinct files of ``size`` bytes (``tiny.NNNNN.dat``) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        path = folder / f"tiny.{i:05d}.dat"
        path.write_bytes(f"{i:0{size}d}".encode()[:size])
        out.append(path)
    return out


ALBUM_TRACKS = 10


def tagged_mp3s(folder: Path, count: int, seconds: float = 10.0) -> list[Path]:
    """``count`` mp3 files with ID3 title/artist/album/track tags, as a music library has them:
    ``folder/Artist NN - Album NN/TT - Title.mp3``, ten tracks an album. One LAME-encoded sine
    (``tests.support.media.make_mp3``) is remuxed with each file's tags by ffmpeg (``-c copy``), so
    every file has its own bytes."""
    from tests.support.media import ffmpeg, make_mp3

    folder.mkdir(parents=True, exist_ok=True)
    template = make_mp3(folder / ".template.mp3", seconds=seconds, seed=7)
    jobs = []
    for i in range(count):
        album, track = divmod(i, ALBUM_TRACKS)
        artist, record = f"Artist {album // 2:02d}", f"Album {album:02d}"
        title = f"Song {i:03d} of {record}"
        path = folder / f"{artist} - {record}" / f"{track + 1:02d} - {title}.mp3"
        path.parent.mkdir(exist_ok=True)
        tags = {"title": title, "artist": artist, "album": record, "album_artist": artist,
                "track": f"{track + 1}/{ALBUM_TRACKS}", "date": str(2000 + album % 20)}
        meta = [arg for key, value in tags.items() for arg in ("-metadata", f"{key}={value}")]
        jobs.append((path, meta))
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(lambda job: ffmpeg("-i", str(template), "-map", "0:a", "-c", "copy",
                                         "-map_metadata", "-1", *job[1], "-id3v2_version", "3",
                                         str(job[0])), jobs))
    template.unlink()
    return [path for path, _ in jobs]


def warm(files: Sequence[Path]) -> None:
    """Read every file once, so every contender starts on the same warm page cache."""
    for path in files:
        with open(path, "rb") as fh:
            while fh.read(16 << 20):
                pass


def files_under(folder: Path) -> list[Path]:
    """Every file below ``folder``, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


def need(binary: str, package: str) -> None:
    """Exit with a hint when ``binary`` is not installed."""
    if not shutil.which(binary):
        raise SystemExit(f"{binary} not found (Debian package {package}; ./dev bench installs it)")


# --- contenders ------------------------------------------------------------------------------

@dataclass
class Timing:
    """Wall-clock and CPU seconds (user + system, of this process's children) of one run."""

    wall: float
    cpu: float


def measure(fn: Callable[[], object]) -> Timing:
    """Time ``fn()``; its CPU is what the subprocesses it waited for used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Timing(wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)


def run(cmd: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (output captured unless ``stdout`` is given); exit with its output if it fails."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    proc = subprocess.run(list(cmd), stderr=subprocess.PIPE, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        output = f"{proc.stderr[-3000:]}\n{(proc.stdout or '')[-2000:]}"
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{output}")
    return proc


def chunks(files: Sequence[Path], size: int = 100) -> list[list[str]]:
    """``files`` as argument lists of at most ``size`` paths."""
    return [[str(p) for p in files[i:i + size]] for i in range(0, len(files), size)]


def b3sum(files: Sequence[Path]) -> None:
    """``b3sum`` over ``files`` (batched invocations; it hashes a large file on every core)."""
    for chunk in chunks(files):
        run(["b3sum", *chunk], stdout=subprocess.DEVNULL)


def b3sum_ln(files: Sequence[Path], dest: Path) -> None:
    """The link baseline: ``b3sum``, then ``ln`` of every file into ``dest``."""
    dest.mkdir(parents=True)
    b3sum(files)
    for chunk in chunks(files):
        run(["ln", *chunk, str(dest)])


def b3sum_cp_sync(files: Sequence[Path], dest: Path) -> None:
    """The copy baseline: ``b3sum``, ``cp`` into ``dest``, then ``sync`` of the copies and of
    ``dest`` (fsync of each, as harbord fsyncs each object and its folder; not the whole
    filesystem, which other users of the machine write to)."""
    dest.mkdir(parents=True)
    b3sum(files)
    for chunk in chunks(files):
        run(["cp", *chunk, str(dest)])
    copies = [dest / p.name for p in files]
    for chunk in chunks(copies):
        run(["sync", *chunk])
    run(["sync", str(dest)])


def harbord_config(work: Path, chain: Sequence[str] | None) -> Path:
    """A config for a fresh state and library under ``work``: MQTT off, ``chain`` as
    ``[pipeline] handlers`` (None: the default chain, embed and index included)."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "harbord.toml"
    pipeline = f"[pipeline]\nhandlers = {json.dumps(list(chain))}\n" if chain is not None else ""
    config.write_text(
        f'[paths]\nstate = "{work / "state"}"\nlibrary = "{work / "library"}"\n'
        f'[[watch]]\npath = "{work / "inbox"}"\n{pipeline}[mqtt]\nenabled = false\n'
    )
    return config


NOTES: list[str] = []
"""Failures of reported (not target) runs, printed with the table."""


def harbord_ingest(src: Path, work: Path, action: str, chain: Sequence[str] | None = SHORT_CHAIN,
                   python: str = sys.executable, strict: bool = True) -> dict[str, dict[str, object]]:
    """``harbord ingest --action ACTION --json SRC`` into a fresh state/library under ``work``
    (the whole process, start-up included). Returns its results. If a file failed: exits, or
    with ``strict=False`` notes the failures in :data:`NOTES` (printed with the table)."""
    config = harbord_config(work, chain)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this tree's harbord, whichever is installed
    proc = subprocess.run([python, "-m", "harbord", "--config", str(config), "ingest", "--action", action,
                           "--json", str(src)], cwd=ROOT, env=env, capture_output=True, text=True)
    try:
        results: dict[str, dict[str, object]] = json.loads(proc.stdout)
    except ValueError:
        raise SystemExit(f"harbord ingest failed ({proc.returncode}):\n{proc.stderr[-3000:]}") from None
    bad = {p: r for p, r in results.items() if r["state"] != "done"}
    if bad and strict:
        raise SystemExit(f"harbord ingest: not ingested: {list(bad.items())[:3]}")
    if bad:
        errors = sorted({str(r["error"]).split(": ", 2)[-1][:120] for r in bad.values()})
        NOTES.append(f"{work.name} ({action}, {'default' if chain is None else '+'.join(chain)} chain): "
                     f"{len(bad)} of {len(results)} files failed: {'; '.join(errors)}")
    return results


LIBS_FLOOR = textwrap.dedent("""
    import os, subprocess, sys
    from multiprocessing import Pool

    def libs(item):
        from guessit import guessit
        from pymediainfo import MediaInfo
        path, name = item
        dict(guessit(name))
        MediaInfo.parse(path, parse_speed=0.0).to_data()

    if __name__ == "__main__":
        root = sys.argv[1]
        items = []
        for folder, _, names in os.walk(root):
            for n in sorted(names):
                items.append((os.path.join(folder, n), os.path.relpath(os.path.join(folder, n),
                                                                        os.path.dirname(root))))
        with Pool(2) as pool:
            for _ in pool.imap_unordered(libs, items, chunksize=4):
                pass
        paths = [p for p, _ in items]
        for i in range(0, len(paths), 100):
            subprocess.run(["b3sum", *paths[i:i + 100]], check=True, stdout=subprocess.DEVNULL)
""")
"""The libraries' floor: guessit on every name (relative to the folder's parent, as harbord
ingest hands it) and MediaInfo on every file (``parse_speed=0``, as harbord's probe), in a
plain ``multiprocessing.Pool(2)``, then ``b3sum`` over the files; a whole Python process."""


ENGINE_FLOOR = textwrap.dedent("""
    import os, sqlite3, sys
    from blake3 import blake3

    src, lib = sys.argv[1], sys.argv[2]
    os.makedirs(lib)
    db = sqlite3.connect(os.path.join(lib, "lib.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE objects(hash TEXT PRIMARY KEY, path TEXT, size INTEGER, source TEXT)")
    for name in sorted(os.listdir(src)):
        path = os.path.join(src, name)
        with open(path, "rb") as fh:
            data = fh.read()
        digest = blake3(data).hexdigest()
        folder = os.path.join(lib, digest[:2])
        os.makedirs(folder, exist_ok=True)
        obj = os.path.join(folder, digest + os.path.splitext(name)[1])
        os.link(path, obj)
        db.execute("BEGIN")
        db.execute("INSERT INTO objects VALUES (?, ?, ?, ?)", (digest, obj, len(data), path))
        db.execute("COMMIT")
    db.close()
""")
"""The engine's floor on tiny files: a plain Python loop that hashes each file (blake3), hardlinks
it to ``<lib>/<h[:2]>/<h>.<ext>`` and inserts one SQLite row in a transaction of its own (WAL,
``synchronous=NORMAL``), as a naive app would; a whole Python process."""


def python_script(script: str, *args: str, python: str = sys.executable) -> None:
    """Run ``script`` (source text) in a fresh ``python`` with ``args``."""
    run([python, "-c", script, *args])


# --- results ---------------------------------------------------------------------------------

@dataclass
class Contender:
    """One way of doing a section's work: ``fn`` runs it once, timed; ``cleanup`` (untimed)
    removes what it made, so the next run starts afresh."""

    name: str
    fn: Callable[[], object]
    cleanup: Callable[[], object] | None = None
    timings: list[Timing] = field(default_factory=list)

    @property
    def wall(self) -> float:
        """Median wall-clock seconds."""
        return statistics.median(t.wall for t in self.timings)

    @property
    def cpu(self) -> float:
        """Median CPU seconds."""
        return statistics.median(t.cpu for t in self.timings)

    @property
    def spread(self) -> str:
        """Fastest-slowest wall-clock seconds, e.g. ``2.91-3.02``."""
        walls = [t.wall for t in self.timings]
        return f"{min(walls):.2f}-{max(walls):.2f}"


@dataclass
class Target:
    """``ours`` / ``baseline`` throughput (= baseline seconds / our seconds) against ``minimum``
    (None: reported, no target)."""

    section: str
    ours: Contender
    baseline: Contender
    minimum: float | None

    @property
    def ratios(self) -> list[float]:
        """Our throughput over the baseline's in each round (the two runs of a round are
        back to back, so a slow spell of the shared machine hits both)."""
        return [b.wall / o.wall for b, o in zip(self.baseline.timings, self.ours.timings, strict=True)]

    @property
    def ratio(self) -> float:
        """The median of the rounds' ratios."""
        return statistics.median(self.ratios)

    @property
    def spread(self) -> str:
        """Lowest-highest round ratio, e.g. ``0.91-1.08``."""
        return f"{min(self.ratios):.2f}-{max(self.ratios):.2f}"

    @property
    def verdict(self) -> str:
        """PASS, FAIL or ``-`` (no target)."""
        if self.minimum is None:
            return "-"
        return "PASS" if self.ratio >= self.minimum else "FAIL"


class Section:
    """Contenders measured on one set of files, interleaved, ``repeat`` times each."""

    def __init__(self, name: str, count: int, total_bytes: int) -> None:
        self.name, self.count, self.total = name, count, total_bytes
        self.contenders: list[Contender] = []

    def add(self, name: str, fn: Callable[[], object], out: Path | None = None) -> Contender:
        """A contender (run by :meth:`measure`) whose output ``out`` is removed after each run."""
        contender = Contender(name, fn, (lambda: shutil.rmtree(out)) if out is not None else None)
        self.contenders.append(contender)
        return contender

    def measure(self, repeat: int) -> None:
        """Run every contender ``repeat`` times, interleaved, printing each run."""
        print(f"{self.name}: {self.count} files, {self.total / 1e9:.3f} GB", flush=True)
        for r in range(repeat):
            for c in self.contenders:
                c.timings.append(measure(c.fn))
                if c.cleanup is not None:
                    c.cleanup()
                t = c.timings[-1]
                print(f"  [{r + 1}/{repeat}] {c.name:52s} {t.wall:7.2f} s (CPU {t.cpu:6.2f} s)", flush=True)

    def rows(self) -> list[str]:
        """One line per contender: median, spread, files/s, MB/s, CPU."""
        return [f"  {c.name:52s} {c.wall:7.2f} s ({c.spread}) {self.count / c.wall:8.1f} files/s "
                f"{self.total / c.wall / 1e6:8.1f} MB/s  CPU {c.cpu:6.2f} s" for c in self.contenders]


def report(sections: Sequence[Section], targets: Sequence[Target], command: str) -> bool:
    """Print every section's medians, then the ratio table (text and Markdown, with date and
    command, as the README keeps it). Returns True when every target is met."""
    print()
    for s in sections:
        runs = len(s.contenders[0].timings)
        print(f"{s.name} ({s.count} files, {s.total / 1e9:.3f} GB), median of {runs}:")
        print("\n".join(s.rows()))
    print()
    width = max(len(f"{t.ours.name} vs {t.baseline.name}") for t in targets)
    head = f"{'section':8s} {'harbord vs baseline':{width}s} {'ratio':>6s} {'rounds':>11s}"
    print(f"{head} {'target':>7s} verdict")
    markdown = [f"Markdown ({time.strftime('%Y-%m-%d')}, `{command}`):",
                "| set | harbord | s | baseline | s | ratio (rounds) | target |",
                "|---|---|---|---|---|---|---|"]
    for t in targets:
        goal = f">= {t.minimum:.1f}" if t.minimum is not None else "report"
        print(f"{t.section:8s} {t.ours.name + ' vs ' + t.baseline.name:{width}s} {t.ratio:6.2f} "
              f"{t.spread:>11s} {goal:>7s} {t.verdict}")
        target = f"≥ {t.minimum:.1f} {t.verdict}" if t.minimum is not None else "reported"
        markdown.append(f"| {t.section} | {t.ours.name} | {t.ours.wall:.2f} | {t.baseline.name} | "
                        f"{t.baseline.wall:.2f} | **{t.ratio:.2f}** ({t.spread}) | {target} |")
    notes = list(dict.fromkeys(NOTES))
    print("".join(f"note: {note}\n" for note in notes))
    print("\n".join(markdown))
    print("".join(f"\n{note}" for note in notes))
    return all(t.verdict != "FAIL" for t in targets)


if __name__ == "__main__":
    print("bench/common.py: helpers for the other benchmarks; nothing to run", file=sys.stderr)
