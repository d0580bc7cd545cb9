"""The core commands: run, status, show, retry, check-config, doctor.

Each formats a result of :mod:`harbord.queries` (``--json``: the shapes in the README).
"""

from __future__ import annotations

import asyncio
import json
import sys

import click
from rich.table import Table

from harbord import queries
from harbord.cli.common import fail, out, print_json, setup_logging
from harbord.config import Config


@click.command()
@click.pass_obj
def run(config: Config) -> None:
    """Run the daemon (watch, ingest, publish) until SIGTERM/SIGINT."""
    from harbord.daemon import run_daemon

    setup_logging(config)
    sys.exit(asyncio.run(run_daemon(config)))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see README).")
@click.pass_obj
def status(config: Config, as_json: bool) -> None:
    """Job counts, catalog totals and recent failures with their reasons."""
    data = queries.status(config)
    if as_json:
        print_json(json.dumps(data))
        return
    table = Table(title="harbord status")
    for state in data["jobs"]:
        table.add_column(state)
    table.add_row(*(str(n) for n in data["jobs"].values()))
    out.print(table)
    out.print(f"items {data['items']}  objects {data['objects']}  bytes {data['bytes']:,}")
    if data["failures"]:
        fails = Table(title="recent failures")
        for col in ("job", "state", "attempts", "error"):
            fails.add_column(col, overflow="fold")
        for f in data["failures"]:
            fails.add_row(f["job_id"][:12], f["state"], str(f["attempts"]), f["error"] or "")
        out.print(fails)


@click.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show(config: Config, ref: str, as_json: bool) -> None:
    """One item by ITEM_ID, JOB_ID, HASH (of its content) or PATH: parse, probe, hash, object
    path, files."""
    item = queries.show(config, ref)
    if item is None:
        fail(f"no item for {ref!r}", code=1)
        return
    if as_json:
        print_json(json.dumps(item, default=str))
        return
    table = Table(show_header=False, title=f"item {item['id']}")
    for key in ("title", "media_type", "year", "season", "episode", "object_hash"):
        table.add_row(key, str(item.get(key)))
    table.add_row("object", str((item.get("object") or {}).get("path")))
    table.add_row("parsed", json.dumps(item["parsed"], ensure_ascii=False))
    table.add_row("probe", json.dumps(item["probe"], ensure_ascii=False))
    enrichment = item.get("enrichment") or {}
    if enrichment.get("status"):
        table.add_row("enrichment", f"{enrichment['status']}: {enrichment.get('why') or ''}")
    for f in item["files"]:
        table.add_row("file", f"{f['path']} ({'present' if f['present'] else 'moved'})")
    out.print(table)


@click.command()
@click.argument("job_id", required=False)
@click.option("--failed", is_flag=True, help="Retry every failed job.")
@click.option("--dead", is_flag=True, help="Retry every dead job.")
@click.pass_obj
def retry(config: Config, job_id: str | None, failed: bool, dead: bool) -> None:
    """Put failed/dead jobs back in the queue (the running daemon picks them up within 5 s)."""
    if not job_id and not failed and not dead:
        fail("give a JOB_ID, --failed or --dead")
    states = tuple(s for s, on in (("failed", failed), ("dead", dead)) if on)
    ids = queries.retry(config, job_id, states)
    out.print(f"{len(ids)} job(s) queued again")
    sys.exit(0 if ids or not job_id else 1)


@click.command("check-config")
@click.pass_obj
def check_config(config: Config) -> None:
    """Validate the config (unknown keys and handlers are errors) and print it resolved."""
    print_json(config.model_dump_json())


@click.command()
@click.pass_obj
def doctor(config: Config) -> None:
    """Check folders, database, broker, ffmpeg, mediainfo, inotify limit and the embedding model."""
    from harbord.doctor import run_checks

    table = Table(title="harbord doctor")
    for col in ("check", "result", "detail"):
        table.add_column(col, overflow="fold")
    worst = 0
    for name, level, detail in run_checks(config):
        colour = {"ok": "green", "warn": "yellow", "fail": "red"}[level]
        table.add_row(name, f"[{colour}]{level}[/{colour}]", detail)
        worst = max(worst, {"ok": 0, "warn": 0, "fail": 1}[level])
    out.print(table)
    sys.exit(worst)
