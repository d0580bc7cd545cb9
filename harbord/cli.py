"""The ``harbord`` command line (click + rich).

Commands: run, status, show, retry, check-config, doctor (ingest from :mod:`harbord.cli_ingest`,
search/reindex from :mod:`harbord.cli_search`, rebuild-catalog from :mod:`harbord.cli_rebuild`).
``--json`` outputs are stable and documented in the README.
Exit codes: 0 ok, 1 a job failed / a check failed, 2 bad usage or invalid config.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.markup import escape
from rich.table import Table

from harbord import __version__
from harbord.cli_common import console, fail, out, print_json, setup_logging
from harbord.config import Config, load_config
from harbord.errors import HarbordError


class _Group(click.Group):
    """Turns HarbordError into a one-line message and exit code 2 instead of a traceback; an
    SQLite error no command turned into one (a damaged database met mid-command) too, naming
    the database file (:func:`harbord.integrity.catalog_error`)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HarbordError as err:
            _fail_line(str(err))
        except sqlite3.DatabaseError as err:
            from harbord.integrity import catalog_error

            db = ctx.obj.db_path if isinstance(ctx.obj, Config) else None
            _fail_line(str(catalog_error(db, err)))


def _fail_line(message: str) -> NoReturn:
    """``harbord: <message>`` on stderr as one line (not wrapped at 80 columns, no markup
    read in it: a path may hold ``[...]``), then exit 2."""
    console.print(f"[red]harbord:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(2)


@click.group(cls=_Group)
@click.option("--config", "config_path", type=click.Path(path_type=Path), envvar="HARBORD_CONFIG",
              help="TOML config file (default: $HARBORD_CONFIG, else built-in defaults).")
@click.version_option(__version__, prog_name="harbord")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """harbord: watch drop folders, identify, store, search and announce media."""
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 prints as \xff
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    ctx.obj = load_config(config_path)
    if ctx.invoked_subcommand == "ingest":  # start the CPU pool first: it warms up meanwhile
        from harbord import daemon_lock

        if daemon_lock.running_pid(ctx.obj.paths.state) is None:  # else the daemon does the work
            from harbord.runtime import start_cpu_pool

            start_cpu_pool(ctx.obj)


@main.command()
@click.pass_obj
def run(config: Config) -> None:
    """Run the daemon (watch, ingest, publish) until SIGTERM/SIGINT."""
    from harbord.daemon import run_daemon

    setup_logging(config)
    sys.exit(asyncio.run(run_daemon(config)))


def _status(config: Config) -> dict[str, Any]:
    from harbord.catalog import Catalog, open_db
    from harbord.queue import JobQueue

    if not config.db_path.exists():
        return {"jobs": dict.fromkeys(("pending", "running", "done", "failed", "dead"), 0),
                "items": 0, "objects": 0, "bytes": 0, "failures": []}
    db = open_db(config.db_path)
    try:
        queue = JobQueue(db)
        return {"jobs": queue.counts(), **Catalog(db).totals(), "failures": queue.recent_failures(10)}
    finally:
        db.close()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see README).")
@click.pass_obj
def status(config: Config, as_json: bool) -> None:
    """Job counts, catalog totals and recent failures with their reasons."""
    data = _status(config)
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


@main.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show(config: Config, ref: str, as_json: bool) -> None:
    """One item by ITEM_ID, JOB_ID, HASH (of its content) or PATH: parse, probe, hash, object
    path, files."""
    from harbord.catalog import Catalog, open_db
    from harbord.queue import JobQueue

    db = open_db(config.db_path)
    try:
        catalog = Catalog(db)
        item_id: int | None = int(ref) if ref.isdigit() else None
        if item_id is None and re.fullmatch(r"[0-9a-f]{64}", ref):
            item_id = catalog.item_id_for_object(ref)
        elif item_id is None:
            job = JobQueue(db).get(ref)
            item_id = job["record"].item_id if job else catalog.item_id_for_path(os.path.abspath(ref))
        item = catalog.get_item(item_id) if item_id is not None else None
    finally:
        db.close()
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
    for f in item["files"]:
        table.add_row("file", f"{f['path']} ({'present' if f['present'] else 'moved'})")
    out.print(table)


@main.command()
@click.argument("job_id", required=False)
@click.option("--failed", is_flag=True, help="Retry every failed job.")
@click.option("--dead", is_flag=True, help="Retry every dead job.")
@click.pass_obj
def retry(config: Config, job_id: str | None, failed: bool, dead: bool) -> None:
    """Put failed/dead jobs back in the queue (the running daemon picks them up within 5 s)."""
    from harbord.catalog import open_db
    from harbord.queue import JobQueue

    if not job_id and not failed and not dead:
        fail("give a JOB_ID, --failed or --dead")
    db = open_db(config.db_path)
    try:
        states = tuple(s for s, on in (("failed", failed), ("dead", dead)) if on)
        ids = JobQueue(db).retry(job_id, states)
    finally:
        db.close()
    out.print(f"{len(ids)} job(s) queued again")
    sys.exit(0 if ids or not job_id else 1)


@main.command("check-config")
@click.pass_obj
def check_config(config: Config) -> None:
    """Validate the config (unknown keys and handlers are errors) and print it resolved."""
    print_json(config.model_dump_json())


@main.command()
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


def _add_commands() -> None:
    from harbord import cli_ingest, cli_rebuild, cli_search  # light: heavy imports happen inside the commands

    main.add_command(cli_ingest.ingest)
    main.add_command(cli_search.search)
    main.add_command(cli_search.reindex)
    main.add_command(cli_rebuild.rebuild_catalog)


_add_commands()
