"""Enrichment: requests per item, the time ``enrich`` adds to ``harbord ingest``, MusicBrainz's rate.

Everything runs against :class:`tests.support.replay.ReplayServer` (recorded TMDb, OMDb and
MusicBrainz answers on local ports, with faults switched on and off between runs), with the
real client libraries pointed at it by the config only. The files are real mkv files (one
ffmpeg-made template, a unique 64-byte tail each, so every file is its own object) named as
releases are: ``The.Matrix.1999.720p.mkv``, ``Fight.Club.1999...``, ``The.Matrix.Reloaded.2003
...`` (found by the scored search), ``Mirrors.2008.[tmdbid-13515]...`` (an id in the name),
``Taken.2008.tt0936501...`` (an IMDb id, resolved through ``/find``) and ``Qwzxv.Nothing.2011
...`` (nothing found: a cached "not found").

1. **Requests per item** (target: 0 with a warm cache). The six titles are ingested with the
   short chain (``parse + probe + checksum + store``) into a fresh catalog; then, in this
   process, :meth:`EnrichService.enrich_item` enriches each item (cold cache), and a new
   service on a newly opened connection to the same database enriches them again (warm). The
   replay server's log counts each provider's requests per item.
2. **Time added to ingestion**: ``harbord ingest --action keep`` (a whole process, start-up
   included, into a fresh state and library, so a cold cache every run) of ``--files`` files
   with the short chain (enrichment off: the baseline) against the same + ``enrich`` with the
   server up, down (every provider's port closed: connection refused) and slow (every answer
   delayed ``--delay`` s, beyond ``[enrich] timeout_seconds`` = ``--timeout``, which every
   enrich run here uses). The four run interleaved in ``--rounds`` rounds (off and down back to
   back, their order swapped every other round); a ratio (baseline s / contender s) is the
   median of the rounds' ratios. Targets: server down, ratio >= 0.9 (throughput within 10 % of enrichment
   off); server slow, added seconds per item ((slow - off) / files, median of the rounds)
   <= timeout_seconds. Up is reported. With the server slow, the ``enrich`` step's own hold
   of each job is also timed in this process (:class:`handlers.enrich.step.Enrich` on the
   six items, one after another): reported per item.
3. **MusicBrainz under 4 parallel workers** (target: at most 1 request in any 1 s window of
   the replay log): 4 concurrent workers enrich the six items of a fresh catalog on one
   service (the films' soundtrack lookups go to MusicBrainz), then 4 concurrent workers make
   ``--mb-calls`` soundtrack searches each straight through the service.

Prints PASS/FAIL per target and a Markdown table; exit 0 when every target is met.
Usage: ``python bench/enrich.py [--rounds 3 --files 24 --timeout 1 --delay 3 --mb-calls 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    ROOT,
    SHORT_CHAIN,
    Contender,
    Section,
    Target,
    harbord_config,
    measure,
    report,
    warm,
)

from tests.support.replay import ReplayServer

TITLES = ("The.Matrix.1999", "Fight.Club.1999", "The.Matrix.Reloaded.2003",
          "Mirrors.2008.[tmdbid-13515]", "Taken.2008.tt0936501", "Qwzxv.Nothing.2011")
"""Release-name stems the replay server knows (the last one it does not: "not found")."""
VARIANTS = ("720p.BluRay.x264", "1080p.WEB-DL", "2160p.REMUX", "DVDRip.XviD", "HDTV.720p",
            "1080p.BluRay.DTS", "WEBRip.x265", "BDRip.1080p")
"""Release tags guessit drops, so several files of one title parse to the same title."""
PROVIDERS = ("tmdb", "omdb", "musicbrainz", "images")
"""The replay server's four ports (``images``: TMDb's image host, posters and backdrops)."""
ENRICH_CHAIN = (*SHORT_CHAIN, "enrich")


# --- set-up ----------------------------------------------------------------------------------

def make_files(folder: Path, count: int, template: Path) -> list[Path]:
    """``count`` distinct copies of ``template`` named ``<title>.<variant>.mkv``, the titles in
    turn (``count`` <= 6 x 8 keeps every name distinct)."""
    folder.mkdir(parents=True, exist_ok=True)
    if count > len(TITLES) * len(VARIANTS):
        raise SystemExit(f"at most {len(TITLES) * len(VARIANTS)} files")
    data = template.read_bytes()
    out = []
    for i in range(count):
        title, variant = TITLES[i % len(TITLES)], VARIANTS[i // len(TITLES)]
        path = folder / f"{title}.{variant}.mkv"
        path.write_bytes(data + f"{i:064d}".encode())
        out.append(path)
    return out


def slug(name: str) -> str:
    """A contender's name as a folder name."""
    return "".join(ch if ch.isalnum() else "-" for ch in name).strip("-")


def write_config(work: Path, chain: Sequence[str], replay: ReplayServer, timeout: float) -> Path:
    """:func:`common.harbord_config` plus an ``[enrich]`` section pointing the three providers
    at the replay server (keys are placeholders: the server ignores them)."""
    config = harbord_config(work, chain)
    with open(config, "a", encoding="utf-8") as fh:
        fh.write(
            f"[enrich]\ntimeout_seconds = {timeout}\n"
            f'[enrich.tmdb]\napi_key = "bench-tmdb-key"\nbase_url = "{replay.tmdb_base}"\n'
            f'[enrich.omdb]\napi_key = "bench-omdb-key"\nbase_url = "{replay.omdb_url}"\n'
            f'[enrich.musicbrainz]\nhost = "{replay.musicbrainz_host}"\nhttps = false\n'
        )
    return config


def ingest(src: Path, work: Path, chain: Sequence[str], replay: ReplayServer, timeout: float
           ) -> dict[str, dict[str, Any]]:
    """``harbord ingest --action keep --json SRC`` into a fresh state/library under ``work`` (the
    whole process); exits unless every file is done."""
    config = write_config(work, chain, replay, timeout)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HARBORD_CONFIG", None)
    proc = subprocess.run([sys.executable, "-m", "harbord", "--config", str(config), "ingest",
                           "--action", "keep", "--json", str(src)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    try:
        results: dict[str, dict[str, Any]] = json.loads(proc.stdout)
    except ValueError:
        raise SystemExit(f"harbord ingest failed ({proc.returncode}):\n{proc.stderr[-3000:]}") from None
    bad = {p: r for p, r in results.items() if r["state"] != "done"}
    if bad:
        raise SystemExit(f"harbord ingest: not ingested: {list(bad.items())[:3]}")
    return results


def enrich_states(work: Path) -> dict[str, int]:
    """How many items of the catalog under ``work`` ended in each enrichment status."""
    import sqlite3

    db = sqlite3.connect(work / "state" / "harbord.db")
    try:
        rows = db.execute("SELECT status, count(*) FROM enrich_state GROUP BY status").fetchall()
    except sqlite3.OperationalError:  # no enrich_state table: the chain had no enrich step
        rows = []
    finally:
        db.close()
    return {str(status): int(n) for status, n in rows}


class Catalog:
    """A catalog opened in this process (as the daemon opens it), for the service and step."""

    def __init__(self, config_path: Path) -> None:
        from harbord.catalog import Catalog as HarbordCatalog
        from harbord.catalog import open_db
        from harbord.config import load_config
        from harbord.context import Context
        from harbord.events import ListSink

        config = load_config(config_path)
        self.db = open_db(config.db_path)
        self.ctx = Context(config=config, db=self.db, catalog=HarbordCatalog(self.db), events=ListSink())

    def items(self) -> list[tuple[int, str]]:
        return [(int(r[0]), str(r[1])) for r in self.db.execute("SELECT id, title FROM items ORDER BY id")]

    async def close(self) -> None:
        await self.ctx.aclose()
        self.db.close()


# --- 1. requests per item --------------------------------------------------------------------

@dataclass
class Pass:
    """One pass of enrich_item over the items: requests per provider for each item."""

    name: str
    per_item: list[tuple[str, str, dict[str, int]]] = field(default_factory=list)
    seconds: float = 0.0

    def total(self, provider: str | None = None) -> int:
        return sum(n for _, _, counts in self.per_item for p, n in counts.items()
                   if provider is None or p == provider)

    def mean(self, provider: str | None = None) -> float:
        return self.total(provider) / max(1, len(self.per_item))


async def enrich_pass(name: str, config: Path, replay: ReplayServer) -> Pass:
    """A new service (and connection) enriching every item of the catalog, one after another."""
    from handlers.enrich.service import EnrichService

    catalog = Catalog(config)
    service = EnrichService(catalog.ctx)
    result = Pass(name)
    start = time.perf_counter()
    try:
        for item_id, title in catalog.items():
            before = {p: replay.count(p) for p in PROVIDERS}
            outcome = await service.enrich_item(item_id)
            result.per_item.append((title, outcome.status,
                                    {p: replay.count(p) - before[p] for p in PROVIDERS}))
    finally:
        result.seconds = time.perf_counter() - start
        await service.aclose()
        await catalog.close()
    return result


def requests_per_item(src: Path, work: Path, replay: ReplayServer, timeout: float) -> tuple[Pass, Pass]:
    ingest(src, work, SHORT_CHAIN, replay, timeout)
    config = work / "harbord.toml"
    cold = asyncio.run(enrich_pass("cold", config, replay))
    warm_pass = asyncio.run(enrich_pass("warm", config, replay))
    return cold, warm_pass


def print_passes(cold: Pass, warm_pass: Pass) -> None:
    print("requests per item (enrich_item, one after another):")
    head = " ".join(f"{p:>11s}" for p in PROVIDERS)
    print(f"  {'item':28s} {'status':13s} {head}   (cold | warm)")
    for (title, status, c), (_, wstatus, w) in zip(cold.per_item, warm_pass.per_item, strict=True):
        cells = " ".join(f"{c[p]:>5d} | {w[p]:<3d}" for p in PROVIDERS)
        print(f"  {title[:28]:28s} {status + '/' + wstatus:13s} {cells}")
    for p in (cold, warm_pass):
        by = ", ".join(f"{prov} {p.mean(prov):.2f}" for prov in PROVIDERS)
        print(f"  {p.name}: {p.mean():.2f} requests per item ({by}); {p.seconds:.2f} s for "
              f"{len(p.per_item)} items")


# --- 2. time added to ingestion --------------------------------------------------------------

@dataclass
class Case:
    """A contender and the server state it runs against (set before it, undone after it,
    outside its timing)."""

    contender: Contender
    fault: Callable[[], None] = lambda: None
    states: dict[str, int] = field(default_factory=dict)
    """Enrichment statuses the last run's catalog ended with."""
    requests: dict[str, int] = field(default_factory=dict)
    """Replay requests of the last run, per provider."""


def run_rounds(section: Section, cases: Sequence[Case], rounds: int, replay: ReplayServer,
               work: Path) -> None:
    """Every case once per round, interleaved, printing each run; the first two (enrichment
    off, server down: the target's pair) run back to back, in swapped order every other round,
    so neither always runs first."""
    print(f"{section.name}: {section.count} files, {section.total / 1e6:.1f} MB", flush=True)
    for r in range(rounds):
        order = list(cases) if r % 2 == 0 else [cases[1], cases[0], *cases[2:]]
        for case in order:
            c = case.contender
            case.fault()
            replay.clear_log()
            c.timings.append(measure(c.fn))
            case.requests = {p: replay.count(p) for p in PROVIDERS}
            for provider in PROVIDERS:
                replay.clear_faults(provider)
            out = work / slug(c.name)
            case.states = enrich_states(out)
            shutil.rmtree(out)
            t = c.timings[-1]
            asked = " ".join(f"{p} {n}" for p, n in case.requests.items() if n)
            print(f"  [{r + 1}/{rounds}] {c.name:30s} {t.wall:7.2f} s (CPU {t.cpu:5.2f} s)  "
                  f"{case.states or ''} {asked}", flush=True)


def slow_down(replay: ReplayServer, seconds: float) -> Callable[[], None]:
    def fault() -> None:
        for provider in PROVIDERS:
            replay.delay(provider, seconds)
    return fault


def take_down(replay: ReplayServer) -> Callable[[], None]:
    def fault() -> None:
        for provider in PROVIDERS:
            replay.down(provider)
    return fault


async def step_holds(config: Path, replay: ReplayServer, delay: float) -> list[tuple[str, float, str]]:
    """The ``enrich`` step on every item of the catalog with the server slow: how long it held
    each job (one after another, as one worker would), and the status it left."""
    from handlers.enrich.step import Enrich
    from harbord.job import Job

    catalog = Catalog(config)
    step = Enrich.from_context(catalog.ctx)
    holds = []
    slow_down(replay, delay)()
    try:
        for item_id, title in catalog.items():
            job = Job(id=f"{item_id:032x}", path=f"/bench/{title}", item_id=item_id, media_type="movie")
            start = time.perf_counter()
            await step.handle(job)
            held = time.perf_counter() - start
            row = catalog.db.execute("SELECT status FROM enrich_state WHERE item_id = ?",
                                     [item_id]).fetchone()
            holds.append((title, held, row[0] if row else "-"))
        await asyncio.sleep(delay)  # let the late enrichments end (their requests time out)
    finally:
        for provider in PROVIDERS:
            replay.clear_faults(provider)
        await catalog.close()
    return holds


# --- 3. MusicBrainz under 4 workers ----------------------------------------------------------

@dataclass
class Rate:
    """MusicBrainz requests of one phase as the replay server logged them."""

    name: str
    requests: int
    seconds: float
    max_in_1s: int
    min_gap: float
    rate: float
    close: int
    """Consecutive requests less than 1 s apart."""
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "PASS" if self.max_in_1s <= 1 else "FAIL"


def mb_figures(name: str, replay: ReplayServer, seconds: float, statuses: dict[str, int]) -> Rate:
    times = [r.time for r in replay.requests("musicbrainz")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return Rate(name, len(times), seconds, replay.max_in_window("musicbrainz", 1.0),
                min(gaps) if gaps else float("nan"), replay.rate("musicbrainz"),
                sum(gap < 1.0 for gap in gaps), statuses)


async def mb_parallel(config: Path, replay: ReplayServer, calls: int, workers: int = 4) -> list[Rate]:
    """4 workers enriching the catalog's items on one service, then 4 workers making ``calls``
    MusicBrainz soundtrack searches each through the service."""
    from handlers.enrich.service import EnrichService

    catalog = Catalog(config)
    service = EnrichService(catalog.ctx)
    rates = []
    try:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for item_id, _ in catalog.items():
            queue.put_nowait(item_id)
        statuses: dict[str, int] = {}

        async def enrich_worker() -> None:
            while not queue.empty():
                outcome = await service.enrich_item(queue.get_nowait())
                statuses[outcome.status] = statuses.get(outcome.status, 0) + 1

        replay.clear_log()
        start = time.perf_counter()
        await asyncio.gather(*(enrich_worker() for _ in range(workers)))
        seconds = time.perf_counter() - start
        rates.append(mb_figures(f"{workers} workers x enrich_item", replay, seconds, statuses))

        found: dict[str, int] = {}

        async def search_worker(w: int) -> None:
            for k in range(calls):
                answer = await service._optional("musicbrainz", "search_soundtrack",
                                                 f"Bench Film {w}-{k}", 1990 + k)
                key = "found" if answer else "none"
                found[key] = found.get(key, 0) + 1

        await asyncio.sleep(1.0)  # the two phases' logs stay apart
        replay.clear_log()
        start = time.perf_counter()
        await asyncio.gather(*(search_worker(w) for w in range(workers)))
        rates.append(mb_figures(f"{workers} workers x {calls} search_soundtrack", replay,
                                time.perf_counter() - start, found))
    finally:
        await service.aclose()
        await catalog.close()
    return rates


# --- main ------------------------------------------------------------------------------------

def main() -> int:
    """Run the benchmark; exit 0 when every target is met, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the ingest contenders (median)")
    parser.add_argument("--files", type=int, default=24, help="files per ingest run (at most 48)")
    parser.add_argument("--timeout", type=float, default=1.0, help="[enrich] timeout_seconds")
    parser.add_argument("--delay", type=float, default=3.0, help="seconds the slow server waits per answer")
    parser.add_argument("--mb-calls", type=int, default=2, help="MusicBrainz searches per worker")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    import structlog  # the service logs each pending item at info: keep this output to the figures

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.delay <= args.timeout:
        raise SystemExit("--delay must exceed --timeout (the slow server answers too late)")
    scratch = Path(tempfile.mkdtemp(prefix="harbord-bench-enrich-", dir=args.dir))
    began = time.perf_counter()
    ok = True
    try:
        from tests.support.media import make_mkv

        template = make_mkv(scratch / "template.mkv", seconds=1.0, subtitles=False, seed=3)
        with ReplayServer() as replay:
            # 1. requests per item, cold and warm
            make_files(scratch / "titles", len(TITLES), template)
            cold, warm_pass = requests_per_item(scratch / "titles", scratch / "requests", replay,
                                                args.timeout)
            print_passes(cold, warm_pass)
            warm_ok = warm_pass.total() == 0
            print(f"  warm: {warm_pass.total()} requests for {len(warm_pass.per_item)} items, target 0: "
                  f"{'PASS' if warm_ok else 'FAIL'}\n", flush=True)

            # 2. the time enrich adds to harbord ingest
            src = scratch / "in"
            files = make_files(src, args.files, template)
            section = Section("ingest", len(files), sum(p.stat().st_size for p in files))
            out = scratch / "out"

            def contender(name: str, chain: Sequence[str]) -> Contender:
                return section.add(name, lambda: ingest(src, out / slug(name), chain, replay, args.timeout))

            off = Case(contender("enrich off (short chain)", SHORT_CHAIN))
            up = Case(contender("+ enrich, server up", ENRICH_CHAIN))
            down = Case(contender("+ enrich, server down", ENRICH_CHAIN), take_down(replay))
            slow = Case(contender(f"+ enrich, server slow {args.delay:g} s", ENRICH_CHAIN),
                        slow_down(replay, args.delay))
            cases = [off, down, slow, up]
            warm(files)
            run_rounds(section, cases, args.rounds, replay, out)
            # (a fresh catalog; a timed-out answer is not cached, so it stays cold for 3.)
            ingest(scratch / "titles", scratch / "fresh", SHORT_CHAIN, replay, args.timeout)
            holds = asyncio.run(step_holds(scratch / "fresh" / "harbord.toml", replay, args.delay))

            # 3. MusicBrainz under 4 parallel workers (the same catalog, still uncached)
            rates = asyncio.run(mb_parallel(scratch / "fresh" / "harbord.toml", replay, args.mb_calls))

        # the report
        targets = [Target("ingest", down.contender, off.contender, 0.9),
                   Target("ingest", up.contender, off.contender, None),
                   Target("ingest", slow.contender, off.contender, None)]
        command = ("python bench/enrich.py " + " ".join(sys.argv[1:])).strip()
        ok = report([section], targets, command) and ok
        def per_item(case: Case) -> list[float]:
            """Seconds the case added per file to the same round's enrichment-off run."""
            pairs = zip(case.contender.timings, off.contender.timings, strict=True)
            return [(ours.wall - base.wall) / len(files) for ours, base in pairs]

        added, added_up, added_down = per_item(slow), per_item(up), per_item(down)
        slow_added = statistics.median(added)
        slow_ok = slow_added <= args.timeout
        print()
        for name, values in (("server up", added_up), ("server down", added_down), ("server slow", added)):
            print(f"added per item, {name:11s}: {statistics.median(values) * 1000:7.1f} ms "
                  f"({min(values) * 1000:.1f}-{max(values) * 1000:.1f})")
        print(f"server slow: {slow_added:.3f} s added per item, target <= timeout_seconds "
              f"{args.timeout:g} s: {'PASS' if slow_ok else 'FAIL'}")
        for case in cases[1:]:
            print(f"  {case.contender.name}: the last run's items ended {case.states}; it asked "
                  f"{case.requests}")
        print(f"enrich step's hold per job, server slow (timeout_seconds {args.timeout:g}): "
              + ", ".join(f"{title[:12]} {held:.2f} s ({status})" for title, held, status in holds)
              + f"; max {max(h for _, h, _ in holds):.2f} s")
        print()
        rate_ok = all(r.verdict == "PASS" for r in rates)
        for r in rates:
            print(f"musicbrainz, {r.name}: {r.requests} requests in {r.seconds:.1f} s ({r.statuses}), "
                  f"{r.rate:.3f}/s first to last, min gap {r.min_gap:.4f} s, {r.close} of "
                  f"{max(0, r.requests - 1)} gaps < 1 s; max {r.max_in_1s} in any 1 s window, "
                  f"target <= 1: {r.verdict}")
        print()
        print("Markdown:")
        print("| figure | value | target |")
        print("|---|---|---|")
        print(f"| requests per item, cold cache ({len(cold.per_item)} movies, one service) | "
              f"{cold.mean():.2f} ({', '.join(f'{p} {cold.mean(p):.2f}' for p in PROVIDERS)}) | reported |")
        print(f"| requests per item, warm cache (new service, same catalog) | {warm_pass.mean():.2f} | "
              f"0 {'PASS' if warm_ok else 'FAIL'} |")
        for t in targets:
            goal = f"≥ {t.minimum:.1f} {t.verdict}" if t.minimum is not None else "reported"
            print(f"| ingest {len(files)} files: off {t.baseline.wall:.2f} s vs {t.ours.name} "
                  f"{t.ours.wall:.2f} s | **{t.ratio:.2f}** ({t.spread}) | {goal} |")
        print(f"| added per item, server slow ({args.delay:g} s > timeout_seconds {args.timeout:g}) | "
              f"{slow_added:.3f} s ({min(added):.3f}-{max(added):.3f}) | ≤ {args.timeout:g} s "
              f"{'PASS' if slow_ok else 'FAIL'} |")
        longest = max(h for _, h, _ in holds)
        print(f"| enrich step's hold per job, server slow | max {longest:.2f} s | reported |")
        for r in rates:
            print(f"| MusicBrainz, {r.name} | max {r.max_in_1s} in 1 s ({r.requests} requests, "
                  f"{r.rate:.3f}/s, min gap {r.min_gap:.4f} s, {r.close} gaps < 1 s) | ≤ 1 {r.verdict} |")
        ok = ok and warm_ok and slow_ok and rate_ok
        print(f"\n{'PASS' if ok else 'FAIL'} ({time.perf_counter() - began:.0f} s)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
