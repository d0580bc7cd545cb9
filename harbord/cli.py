"""The ``harbord`` command line (click + rich).

Commands: run, ingest, status, show, retry, check-config, doctor (and search/reindex from
:mod:`harbord.cli_search`). ``--json`` outputs are stable and documented in the README.
Exit codes: 0 ok, 1 a job failed / a check failed, 2 bad usage or invalid config.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harbord import __version__
from harbord.config import Config, load_config
from harbord.errors import HarbordError
from harbord.events import EventSink, ListSink

console = Console(stderr=True)
out = Console()


def _print_json(text: str) -> None:
    """Print a JSON document on stdout: colourised and indented on a terminal, else the text
    as is, one line. rich's highlighting costs ~3 ms per line of output (0.6 s for the 200-file
    result of ``ingest --json``), which a program reading the output does not need."""
    if out.is_terminal:
        out.print_json(text)
    else:
        click.echo(text)


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[red]harbord:[/red] {message}", highlight=False)
    sys.exit(code)


class _Group(click.Group):
    """Turns HarbordError into a one-line message and exit code 2 instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HarbordError as err:
            _fail(str(err))


@click.group(cls=_Group)
@click.option("--config", "config_path", type=click.Path(path_type=Path), envvar="HARBORD_CONFIG",
              help="TOML config file (default: $HARBORD_CONFIG, else built-in defaults).")
@click.version_option(__version__, prog_name="harbord")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """harbord: watch drop folders, identify, store, search and announce media."""
    ctx.obj = load_config(config_path)
    if ctx.invoked_subcommand == "ingest":  # start the CPU pool first: it warms up meanwhile
        from harbord.runtime import start_cpu_pool

        start_cpu_pool(ctx.obj)


def _setup_logging(config: Config) -> None:
    from harbord.log import setup_logging

    setup_logging(config.log.level, config.log.format)


@main.command()
@click.pass_obj
def run(config: Config) -> None:
    """Run the daemon (watch, ingest, publish) until SIGTERM/SIGINT."""
    from harbord.daemon import run_daemon

    _setup_logging(config)
    sys.exit(asyncio.run(run_daemon(config)))


def _expand(paths: tuple[Path, ...]) -> list[tuple[Path, str | None]]:
    """The files to ingest, each with the root its name is parsed relative to.

    A folder's files are taken as if the folder had been dropped into an inbox: the root is
    the folder's parent, so the folder's own name (``Show/``, ``Movie (2019)/``) is context for
    guessit and the folders above it (``/home/me``) are not. A file named on its own has no
    root: parse reads its last two parent folders.
    """
    from harbord.watcher import hidden_below, is_partial

    files: list[tuple[Path, str | None]] = []
    for given in paths:
        if given.is_dir():
            root = os.path.dirname(os.path.abspath(given))
            for dirpath, dirnames, names in os.walk(given):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(names):
                    path = Path(dirpath) / name
                    if not is_partial(path) and not hidden_below(path, given):
                        files.append((path, root))
        else:
            files.append((given, None))
    return files


class _ProgressSink:
    """Forwards events to ``inner`` and advances a rich progress bar on terminal events."""

    def __init__(self, inner: EventSink, progress: Progress, task: Any) -> None:
        self.inner, self.progress, self.task = inner, progress, task

    def emit(self, event: dict[str, Any]) -> None:
        self.inner.emit(event)
        if event["type"] in ("ingested", "duplicate", "failed", "dead"):
            self.progress.advance(self.task)


def _ingest_workers(config: Config) -> int:
    """Jobs ``harbord ingest`` runs at once: ``pipeline.workers``, at least 2 x cores + 2, so
    while some jobs wait on the CPU pool (parse, probe) others hash and store, and the pool
    never idles. 2 cores, 200 files of 5 MB (median of 3): 2 in flight 4.84 s, 4 4.08 s,
    6 4.03 s, 10 4.20 s."""
    return max(config.pipeline.workers, 2 * (os.cpu_count() or 1) + 2)


async def _ingest(config: Config, files: list[tuple[Path, str | None]], action: str,
                  quiet: bool) -> dict[str, Any]:
    from harbord.runtime import open_runtime

    rt = open_runtime(config, processes=False)  # the CPU pool was started by ingest()
    from harbord.worker import Runner

    inner: EventSink = ListSink()
    if config.mqtt.enabled:
        from harbord.mqtt import OutboxSink  # events wait in the outbox for the daemon to deliver

        inner = OutboxSink(config.mqtt, rt.ctx.db)
    progress = Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, disable=quiet)
    results: dict[str, Any] = {}
    try:
        with progress:
            task = progress.add_task("ingest", total=len(files))
            runner = Runner(rt.queue, rt.handlers, _ProgressSink(inner, progress, task),
                            watch_roots=rt.watch_roots())
            settled: list[tuple[str, int, float, str | None]] = []
            for path, root in files:
                absolute = os.path.abspath(path)
                try:
                    st = os.stat(absolute)
                    settled.append((absolute, st.st_size, st.st_mtime, root))
                except OSError:  # the job fails with the reason, naming the file
                    settled.append((absolute, 0, 0.0, root))
            ids: dict[str, str] = {}
            with rt.queue.db.atomic():  # one transaction for the whole batch, not one per file
                for absolute, size, mtime, root in settled:
                    job_id, created = runner.submit(absolute, size, mtime, source="cli", action=action,
                                                    watch_root=root)
                    if not created and not rt.queue.retry(job_id):  # failed before: try again
                        progress.advance(task)  # done before: stays done
                    ids[job_id] = absolute
            stop = asyncio.Event()
            await asyncio.gather(*(runner.work(stop, set(ids), drain=True)
                                   for _ in range(_ingest_workers(config))))
            rows = rt.queue.get_many(list(ids))
            for job_id, absolute in ids.items():
                row = rows.get(job_id) or {}
                results[absolute] = {"job_id": job_id, "state": row.get("state"),
                                     "outcome": row.get("outcome"), "error": row.get("last_error"),
                                     "item_id": row["record"].item_id if row else None}
    finally:
        await rt.aclose()
    return results


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--action", type=click.Choice(["move", "copy", "link", "keep"]), default="keep",
              show_default=True, help="What happens to each file once stored.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file.")
@click.pass_obj
def ingest(config: Config, paths: tuple[Path, ...], action: str, as_json: bool) -> None:
    """Ingest files or folders in the foreground through the same chain as the daemon.

    Exit 0 when every file ended ingested or duplicate, 1 if any failed.
    """
    from harbord import offload

    try:
        _setup_logging(config.model_copy(update={"log": config.log.model_copy(update={"level": "warning"})}))
        files = _expand(paths)
        if not files:
            _fail("nothing to ingest")
        results = asyncio.run(_ingest(config, files, action, quiet=as_json))
    finally:
        offload.shutdown()
    failed = [p for p, r in results.items() if r["state"] != "done"]
    if as_json:
        _print_json(json.dumps(results))
    else:
        counts: dict[str, int] = {}
        for r in results.values():
            key = r["outcome"] if r["state"] == "done" else r["state"]
            counts[key] = counts.get(key, 0) + 1
        out.print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
        for path in failed:
            out.print(f"[red]failed[/red] {results[path]['error']}", highlight=False)
    sys.exit(1 if failed else 0)


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
        _print_json(json.dumps(data))
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
    """One item by ITEM_ID, JOB_ID or PATH: parse, probe, hash, object path, files."""
    from harbord.catalog import Catalog, open_db
    from harbord.queue import JobQueue

    db = open_db(config.db_path)
    try:
        catalog = Catalog(db)
        item_id: int | None = int(ref) if ref.isdigit() else None
        if item_id is None:
            job = JobQueue(db).get(ref)
            item_id = job["record"].item_id if job else catalog.item_id_for_path(os.path.abspath(ref))
        item = catalog.get_item(item_id) if item_id is not None else None
    finally:
        db.close()
    if item is None:
        _fail(f"no item for {ref!r}", code=1)
        return
    if as_json:
        _print_json(json.dumps(item, default=str))
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
        _fail("give a JOB_ID, --failed or --dead")
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
    _print_json(config.model_dump_json())


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


def _add_search_commands() -> None:
    from harbord import cli_search  # light: heavy imports happen inside the commands

    main.add_command(cli_search.search)
    main.add_command(cli_search.reindex)


_add_search_commands()
