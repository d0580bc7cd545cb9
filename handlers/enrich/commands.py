"""The enrich capability's commands: ``enrich``, ``match``, ``edit``, ``soundtrack``.

With a daemon running on the same state folder, ``enrich`` and ``match`` hand the work to it
(the items' enrichment is set pending and due now; the daemon's background task runs it, with
its shared rate limiters, and re-embeds each item), then follow it to its end. Without one they
run in this process and re-embed the items themselves when ``embed`` is in the chain.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from harbord.cli.common import fail, out, print_json
from harbord.config import Config

ENRICHABLE = "media_type IN ('movie', 'episode')"
EDITABLE_COLUMNS = frozenset({"title", "year"})
"""Catalog columns ``edit`` sets (locked per column in ``items.user_fields``); any other field
is an enrichment field (locked per field in ``enrichment.locked``)."""
LIST_FIELDS = frozenset({"genres", "directors", "writers"})


@contextmanager
def _context(config: Config) -> Iterator[Any]:
    from harbord.catalog import Catalog, open_db
    from harbord.context import Context

    if not config.db_path.exists():
        fail(f"no catalog at {config.db_path} yet (run the daemon or `harbord ingest` first)")
    db = open_db(config.db_path)
    try:
        yield Context(config=config, db=db, catalog=Catalog(db))
    finally:
        db.close()


def _daemon(config: Config) -> bool:
    from harbord import daemon_lock

    return daemon_lock.running_pid(config.paths.state) is not None


def _select(ctx: Any, items: tuple[int, ...], every: bool, pending: bool, review: bool) -> list[int]:
    where = [ENRICHABLE]
    if items:
        for item_id in items:
            if ctx.catalog.get_item(int(item_id)) is None:
                fail(f"no item {item_id}", code=1)
        return [int(i) for i in items]
    if pending or review:
        states = [s for s, on in (("pending", pending), ("needs_review", review)) if on]
        rows = ctx.db.execute(
            f"SELECT item_id FROM enrich_state WHERE status IN ({', '.join('?' for _ in states)}) "
            "ORDER BY item_id", states).fetchall()
        return [int(r[0]) for r in rows]
    if not every:
        fail("give ITEM ids, --all, --pending or --needs-review")
    rows = ctx.db.execute(f"SELECT id FROM items WHERE {' AND '.join(where)} ORDER BY id")
    return [int(r[0]) for r in rows]


def _queue(ctx: Any, ids: list[int]) -> None:
    """Set the items' enrichment pending and due now (the daemon's background task runs it)."""
    now = time.time()
    for item_id in ids:
        ctx.db.execute(
            "INSERT INTO enrich_state(item_id, status, next_attempt_at, updated_at) "
            "VALUES (?, 'pending', ?, ?) "
            "ON CONFLICT(item_id) DO UPDATE SET status = 'pending', attempts = 0, "
            "next_attempt_at = excluded.next_attempt_at, updated_at = excluded.updated_at",
            [item_id, now, now])
    ctx.db.conn.commit()


def _subscribers(ctx: Any) -> None:
    """Give this process's context the capabilities' event subscribers (the search
    capability re-embeds an item on ``enriched``/``edited``), as the daemon's has."""
    from harbord.capability import contributions
    from harbord.events import FanOut

    ctx.events = FanOut([subscriber(ctx) for subscriber in contributions("subscribers")])


async def _settle() -> None:
    """Wait for the tasks the subscribers started (re-embedding)."""
    while others := [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
        await asyncio.gather(*others, return_exceptions=True)


async def _run_here(ctx: Any, ids: list[int], refresh: bool, progress: Progress) -> dict[int, str]:
    from handlers.enrich.service import enrich_service

    _subscribers(ctx)
    service = enrich_service(ctx)
    task = progress.add_task("enrich", total=len(ids))
    results: dict[int, str] = {}
    try:
        for item_id in ids:
            outcome = await service.enrich_item(item_id, refresh=refresh)
            ctx.db.conn.commit()
            results[item_id] = outcome.status
            progress.advance(task)
        await _settle()
    finally:
        await ctx.aclose()
    return results


async def _announce_here(ctx: Any, kind: str, item_id: int) -> None:
    from harbord.events import make_event

    _subscribers(ctx)
    try:
        ctx.events.emit(make_event(kind, "", "", item_id=item_id))
        await _settle()
    finally:
        await ctx.aclose()


def _follow(ctx: Any, ids: list[int], progress: Progress, timeout: float) -> dict[int, str]:
    task = progress.add_task("enrich (daemon)", total=len(ids))
    deadline = time.monotonic() + timeout
    left = set(ids)
    results: dict[int, str] = {}
    while left and time.monotonic() < deadline:
        marks = ", ".join("?" for _ in left)
        for item_id, status in ctx.db.execute(
                f"SELECT item_id, status FROM enrich_state WHERE item_id IN ({marks})", list(left)):
            if status != "pending":
                results[int(item_id)] = str(status)
                left.discard(int(item_id))
                progress.advance(task)
        if left:
            time.sleep(0.2)
    results.update({i: "pending" for i in left})
    return results


def _summary(results: dict[int, str], as_json: bool) -> None:
    counts: dict[str, int] = {}
    for status in results.values():
        counts[status] = counts.get(status, 0) + 1
    if as_json:
        print_json(json.dumps({"items": {str(k): v for k, v in results.items()}, "counts": counts}))
        return
    out.print("  ".join(f"{status} {n}" for status, n in sorted(counts.items())) or "nothing to enrich")


@click.command()
@click.argument("items", nargs=-1, type=int)
@click.option("--all", "every", is_flag=True, help="Every movie and episode.")
@click.option("--pending", is_flag=True, help="Items whose enrichment waits for a provider.")
@click.option("--needs-review", "review", is_flag=True, help="Items with candidates but no match.")
@click.option("--refresh", is_flag=True, help="Ask the providers again (cached answers forgotten).")
@click.option("--stats", is_flag=True, help="Coverage: items by status and source, cache hit rate.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to follow a daemon's work.")
@click.pass_obj
def enrich(config: Config, items: tuple[int, ...], every: bool, pending: bool, review: bool,
           refresh: bool, stats: bool, as_json: bool, timeout: float) -> None:
    """Enrich ITEMS (or --all, --pending, --needs-review) from TMDb, OMDb and MusicBrainz."""
    with _context(config) as ctx:
        if stats:
            _stats(ctx, as_json)
            return
        ids = _select(ctx, items, every, pending, review)
        if refresh:
            for item_id in ids:
                item = ctx.catalog.get_item(item_id)
                if item is not None:
                    from handlers.enrich.service import EnrichService

                    EnrichService(ctx)._forget(item)
            ctx.db.conn.commit()
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            disable=as_json or not sys.stderr.isatty(), transient=True)
        with progress:
            if _daemon(config):
                _queue(ctx, ids)
                results = _follow(ctx, ids, progress, timeout)
            else:
                # refresh=False: the answers were forgotten above, once for every item; forgetting
                # again per item would drop what the items before it just fetched (same title or
                # id) and ask the providers twice
                results = asyncio.run(_run_here(ctx, ids, False, progress))
    _summary(results, as_json)


def _stats(ctx: Any, as_json: bool) -> None:
    from handlers.enrich.cache import ResponseCache

    db = ctx.db
    total = db.execute(f"SELECT count(*) FROM items WHERE {ENRICHABLE}").fetchone()[0]
    by_status = dict(db.execute("SELECT status, count(*) FROM enrich_state GROUP BY status").fetchall())
    by_source: dict[str, int] = {}
    confidences: list[float] = []
    for (text,) in db.execute(f"SELECT enrichment FROM items WHERE {ENRICHABLE}"):
        data = json.loads(text or "{}")
        if data.get("status") == "done":
            by_source[str(data.get("source"))] = by_source.get(str(data.get("source")), 0) + 1
            if isinstance(data.get("confidence"), int | float):
                confidences.append(float(data["confidence"]))
    cached = db.execute("SELECT count(*) FROM enrich_cache").fetchone()[0]
    data = {"items": total, "by_status": by_status, "by_source": by_source,
            "average_confidence": round(sum(confidences) / len(confidences), 3) if confidences else None,
            "cached_answers": cached,
            "cache_hit_rate": ResponseCache(db).hit_rate(),
            "not_enriched": total - sum(by_status.values())}
    if as_json:
        print_json(json.dumps(data))
        return
    table = Table(title="enrichment")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("movies and episodes", str(total))
    for status, n in sorted(by_status.items()):
        table.add_row(f"status {status}", str(n))
    for source, n in sorted(by_source.items()):
        table.add_row(f"source {source}", str(n))
    table.add_row("average confidence", str(data["average_confidence"]))
    table.add_row("cached answers", str(cached))
    rate = data["cache_hit_rate"]
    table.add_row("cache hit rate", "-" if rate is None else f"{rate:.0%}")
    out.print(table)


IDENTITY = re.compile(r"^(tmdb|tv|imdb):(tt\d{7,8}|\d+)$")


@click.command()
@click.argument("item", type=int)
@click.argument("identity", required=False)
@click.option("--candidates", is_flag=True, help="List the stored candidates with their scores and why.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def match(config: Config, item: int, identity: str | None, candidates: bool, as_json: bool) -> None:
    """Pin ITEM to IDENTITY (tmdb:603, tv:1396, imdb:tt0133093) and enrich it; or list its candidates."""
    parsed = IDENTITY.match(identity) if identity is not None and not candidates else None
    if identity is not None and not candidates and parsed is None:
        fail(f"{identity!r}: give tmdb:ID, tv:ID or imdb:ttNNNNNNN")
    with _context(config) as ctx:
        if ctx.catalog.get_item(item) is None:
            fail(f"no item {item}", code=1)
        if candidates or identity is None:
            row = ctx.db.execute("SELECT candidates, why FROM enrich_state WHERE item_id = ?",
                                 [item]).fetchone()
            found = json.loads(row[0]) if row else []
            if as_json:
                print_json(json.dumps({"item": item, "why": row[1] if row else None, "candidates": found}))
                return
            table = Table(title=f"candidates of item {item}" + (f" ({row[1]})" if row and row[1] else ""))
            for col in ("tmdb", "title", "year", "distance", "why"):
                table.add_column(col, overflow="fold")
            for c in found:
                table.add_row(str(c.get("id", c.get("provider_id"))), str(c.get("title")), str(c.get("year")),
                              f"{c.get('distance', 0):.3f}", "; ".join(c.get("why") or []))
            out.print(table)
            return
        assert parsed is not None  # checked above
        scheme, value = parsed.groups()
        pin: dict[str, Any] = ({"imdb": value} if scheme == "imdb" else
                               {"tmdb": int(value), "kind": "tv" if scheme == "tv" else "movie"})
        from handlers.enrich.service import EnrichService

        EnrichService(ctx).pin(item, pin)
        ctx.db.conn.commit()
        progress = Progress(disable=True)
        if _daemon(config):
            _queue(ctx, [item])
            results = _follow(ctx, [item], progress, 120.0)
        else:
            results = asyncio.run(_run_here(ctx, [item], False, progress))
        row = ctx.db.execute("SELECT why FROM enrich_state WHERE item_id = ?", [item]).fetchone()
    _summary(results, as_json)
    if results.get(item) != "done":
        fail(f"item {item}: {identity} not applied ({results.get(item)}): {row[0] if row else '?'}", code=1)


def _value(raw: str) -> Any:
    if raw.startswith("@"):
        try:
            return Path(raw[1:]).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            fail(f"{raw}: cannot read {raw[1:]!r}: {getattr(err, 'strerror', None) or err}")
    return raw


@click.command()
@click.argument("item", type=int)
@click.argument("assignments", nargs=-1)
@click.option("--unlock", "unlock", multiple=True, help="Give FIELD back to the providers.")
@click.pass_obj
def edit(config: Config, item: int, assignments: tuple[str, ...], unlock: tuple[str, ...]) -> None:
    """Set fields of ITEM: title="..." year=1999 overview=@file.txt genres+=Noir; edited
    fields are locked against every refresh (as Jellyfin's LockedFields)."""
    with _context(config) as ctx:
        row = ctx.catalog.get_item(item)
        if row is None:
            fail(f"no item {item}", code=1)
        enrichment = dict(row.get("enrichment") or {})
        locked = set(enrichment.get("locked") or [])
        columns: dict[str, Any] = {}
        for assignment in assignments:
            name, op, raw = (re.split(r"(\+=|=)", assignment, maxsplit=1) if "=" in assignment
                             else ("", "", ""))
            if not name:
                fail(f"{assignment!r}: give FIELD=VALUE or FIELD+=VALUE")
            value = _value(raw)
            if name in EDITABLE_COLUMNS:
                if name == "year" and not re.fullmatch(r"\d{4}", value.strip()):
                    fail(f"{assignment!r}: a year is four digits")
                columns[name] = int(value) if name == "year" else value
                enrichment[name] = columns[name]
            elif op == "+=" or name in LIST_FIELDS:
                current = list(enrichment.get(name) or [])
                enrichment[name] = [*current, value] if op == "+=" else [v.strip() for v in value.split(",")]
            else:
                enrichment[name] = value
            locked.add(name)
        for name in unlock:
            locked.discard(name)
        enrichment["locked"] = sorted(locked)
        if columns:
            ctx.catalog.update_item(item, columns, user=True)
        if unlock:
            user = set(json.loads(ctx.db.execute("SELECT user_fields FROM items WHERE id = ?",
                                                 [item]).fetchone()[0])) - set(unlock)
            ctx.db.execute("UPDATE items SET user_fields = ? WHERE id = ?", [json.dumps(sorted(user)), item])
        ctx.catalog.update_item(item, {"enrichment": enrichment})
        ctx.db.conn.commit()
        if _daemon(config):  # the daemon re-enriches from the cache (locks kept) and re-embeds
            _queue(ctx, [item])
        else:
            asyncio.run(_announce_here(ctx, "edited", item))
    out.print(f"item {item}: {len(assignments)} field(s) set, locked: {', '.join(sorted(locked)) or '-'}")


@click.command()
@click.argument("item", type=int)
@click.option("--add", "tracks", multiple=True, help='A track: "Title | Artist, Artist | 3:45".')
@click.option("--file", "file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="A JSON or TOML file: tracks = [{title, artists, length_seconds}].")
@click.option("--clear", is_flag=True, help="Forget the user's soundtrack (MusicBrainz's is used again).")
@click.pass_obj
def soundtrack(config: Config, item: int, tracks: tuple[str, ...], file: Path | None, clear: bool) -> None:
    """Set ITEM's soundtrack by hand; it wins over MusicBrainz and no refresh replaces it."""
    import tomllib

    entries: list[dict[str, Any]] = []
    for text in tracks:
        parts = [p.strip() for p in text.split("|")]
        length = None
        if len(parts) > 2 and re.fullmatch(r"\d+:\d{2}", parts[2]):
            minutes, seconds = parts[2].split(":")
            length = int(minutes) * 60 + int(seconds)
        artists = [a.strip() for a in parts[1].split(",")] if len(parts) > 1 else []
        entries.append({"title": parts[0], "artists": artists, "length_seconds": length})
    if file is not None:
        raw = file.read_text(encoding="utf-8")
        data = json.loads(raw) if file.suffix == ".json" else tomllib.loads(raw)
        entries += list(data.get("tracks", []) if isinstance(data, dict) else data)
    with _context(config) as ctx:
        if ctx.catalog.get_item(item) is None:
            fail(f"no item {item}", code=1)
        if clear:
            ctx.db.execute("DELETE FROM soundtracks WHERE item_id = ? AND source = 'user'", [item])
        elif entries:
            ctx.db.execute(
                "INSERT INTO soundtracks(item_id, source, release_group_id, tracks, updated_at) VALUES "
                "(?, 'user', NULL, ?, ?) ON CONFLICT(item_id) DO UPDATE SET source = 'user', "
                "release_group_id = NULL, tracks = excluded.tracks, updated_at = excluded.updated_at",
                [item, json.dumps(entries), time.time()])
        else:
            fail("give --add, --file or --clear")
        ctx.db.conn.commit()
    out.print(f"item {item}: soundtrack {'cleared' if clear else f'{len(entries)} track(s)'}")
