"""``harbord ingest``: files or folders through the chain in the foreground.

With no daemon running on the state folder, the command runs the chain itself, in this
process, exactly as the daemon would (:class:`harbord.worker.Runner`, the same job table).
With a daemon running (:mod:`harbord.daemon_lock`), it hands the files over instead: it queues
the jobs in the shared job table, wakes the daemon (SIGUSR1) and follows the jobs to their end
with the same progress bar, results and exit code. The daemon is the one writer of the
embedding spaces and holds the warm CPU pool, and two processes claiming from one job table
would race; a hand-over avoids both.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harbord import daemon_lock
from harbord.cli.common import console, fail, out, print_json, setup_logging
from harbord.config import Config
from harbord.events import EventSink, ListSink
from harbord.job import Action
from harbord.txn import ready

if TYPE_CHECKING:
    from sqlite_utils import Database

    from harbord.queue import JobQueue
    from harbord.worker import Runner

Files = list[tuple[Path, "str | None"]]
FINAL_STATES = frozenset({"done", "failed", "dead"})
HANDOFF_POLL_SECONDS = 0.2
"""How often a handed-over batch's job rows are read while the daemon works on them."""


def _expand(paths: tuple[Path, ...]) -> Files:
    """The files to ingest, each with the root its name is parsed relative to.

    A folder's files are taken as if the folder had been dropped into an inbox: the root is
    the folder's parent, so the folder's own name (``Show/``, ``Movie (2019)/``) is context for
    guessit and the folders above it (``/home/me``) are not. A file named on its own has no
    root: parse reads its last two parent folders.
    """
    from harbord.watcher import hidden_below, is_partial, walk_files

    files: Files = []
    for given in paths:
        if given.is_dir():
            root = os.path.dirname(os.path.abspath(given))
            files += [(path, root) for path in walk_files(given)
                      if not is_partial(path) and not hidden_below(path, given)]
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


def _sink(config: Config, db: Database) -> EventSink:
    """Where this process's events go: the MQTT outbox (the daemon delivers them) or nowhere."""
    if config.mqtt.enabled:
        from harbord.mqtt import OutboxSink

        return OutboxSink(config.mqtt, db)
    return ListSink()


def _progress(quiet: bool) -> Progress:
    return Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, disable=quiet)


def _submit_all(runner: Runner, files: Files, action: Action, progress: Progress,
                task: Any) -> dict[str, str]:
    """Queue every file in one transaction; returns job id -> absolute path. A file queued
    before that failed is put back; one done before stays done (and counts as finished)."""
    settled: list[tuple[str, int, float, str | None]] = []
    for path, root in files:
        absolute = os.path.abspath(path)
        try:
            st = os.stat(absolute)
            settled.append((absolute, st.st_size, st.st_mtime, root))
        except OSError:  # the job fails with the reason, naming the file
            settled.append((absolute, 0, 0.0, root))
    ids: dict[str, str] = {}
    with runner.queue.db.atomic():  # one transaction for the whole batch, not one per file
        for absolute, size, mtime, root in settled:
            job_id, created = runner.submit(absolute, size, mtime, source="cli", action=action,
                                            watch_root=root)
            if not created and not runner.queue.retry(job_id):
                progress.advance(task)
            ids[job_id] = absolute
    return ids


def _results(queue: JobQueue, ids: dict[str, str]) -> dict[str, Any]:
    """The ``--json`` result of each file (see the README)."""
    rows = queue.get_many(list(ids))
    results: dict[str, Any] = {}
    for job_id, absolute in ids.items():
        row = rows.get(job_id) or {}
        results[absolute] = {"job_id": job_id, "state": row.get("state"),
                             "outcome": row.get("outcome"), "error": row.get("last_error"),
                             "item_id": row["record"].item_id if row else None}
    return results


async def _run_here(config: Config, files: Files, action: Action, quiet: bool) -> dict[str, Any]:
    """Run the chain in this process (no daemon is running)."""
    from harbord.runtime import open_runtime

    rt = open_runtime(config, processes=False)  # the CPU pool was started by the group
    from harbord.worker import Runner

    progress = _progress(quiet)
    try:
        with progress:
            task = progress.add_task("ingest", total=len(files))
            sink = _ProgressSink(_sink(config, rt.ctx.db), progress, task)
            runner = Runner(rt.ctx.queue, rt.handlers, sink, watch_roots=rt.ctx.watch_roots())
            await ready(rt.ctx.db)  # another process may hold the write lock: wait, do not fail
            ids = _submit_all(runner, files, action, progress, task)
            stop = asyncio.Event()
            await asyncio.gather(*(runner.work(stop, set(ids), drain=True)
                                   for _ in range(_ingest_workers(config))))
            # A daemon started meanwhile may have claimed some: follow those to their end.
            while rt.ctx.queue.running_elsewhere(list((rows := rt.ctx.queue.get_many(list(ids))).values())):
                progress.update(task, completed=sum(r["state"] in FINAL_STATES for r in rows.values()))
                await asyncio.sleep(HANDOFF_POLL_SECONDS)
            return _results(rt.ctx.queue, ids)
    finally:
        await rt.aclose()


async def _hand_over(config: Config, files: Files, action: Action, quiet: bool, pid: int) -> dict[str, Any]:
    """Queue the files for the daemon ``pid`` and follow their jobs until each has ended
    (done, failed or dead) or the daemon has stopped (the rest is reported as it stands)."""
    from harbord.catalog import open_db
    from harbord.queue import JobQueue
    from harbord.worker import Runner

    pipeline = config.pipeline
    db = open_db(config.db_path)
    try:
        queue = JobQueue.for_config(db, pipeline)
        progress = _progress(quiet)
        with progress:
            task = progress.add_task("ingest", total=len(files))
            runner = Runner(queue, [], _sink(config, db))  # queues only: the daemon runs the chain
            ids = _submit_all(runner, files, action, progress, task)
            if pid > 0:
                with contextlib.suppress(OSError):  # it also polls the table every few seconds
                    os.kill(pid, signal.SIGUSR1)
            while True:
                rows = queue.get_many(list(ids))
                ended = sum(1 for row in rows.values() if row["state"] in FINAL_STATES)
                progress.update(task, completed=ended)
                if ended == len(ids) or daemon_lock.running_pid(config.paths.state) is None:
                    break
                await asyncio.sleep(HANDOFF_POLL_SECONDS)
        return _results(queue, ids)
    finally:
        db.close()


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--action", type=click.Choice(get_args(Action)), default="keep",
              show_default=True, help="What happens to each file once stored.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file.")
@click.pass_obj
def ingest(config: Config, paths: tuple[Path, ...], action: Action, as_json: bool) -> None:
    """Ingest files or folders in the foreground through the same chain as the daemon.

    A running daemon does the work (the files are handed over to it). Exit 0 when every file
    ended ingested, duplicate or ignored, 1 if any failed (or the daemon stopped first).
    """
    from harbord import offload

    try:
        setup_logging(config.model_copy(update={"log": config.log.model_copy(update={"level": "warning"})}))
        files = _expand(paths)
        if not files:
            fail("nothing to ingest")
        pid = daemon_lock.running_pid(config.paths.state)
        if pid is None:
            results = asyncio.run(_run_here(config, files, action, quiet=as_json))
        else:
            offload.shutdown()  # started by the group for a local run: not needed
            results = asyncio.run(_hand_over(config, files, action, as_json, pid))
    finally:
        offload.shutdown()
    failed = [p for p, r in results.items() if r["state"] != "done"]
    if as_json:
        print_json(json.dumps(results))
    else:
        counts: dict[str, int] = {}
        for r in results.values():
            key = r["outcome"] if r["state"] == "done" else r["state"]
            counts[key] = counts.get(key, 0) + 1
        out.print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
        for path in failed:
            out.print(f"[red]failed[/red] {results[path]['error']}", highlight=False)
    # Nothing is left to clean up but memory: freeze the objects made so far out of the
    # collector's reach, so the interpreter's exit does not trace them all again (200 files:
    # ~0.2 s less from the last output to the exit of this process).
    gc.freeze()
    sys.exit(1 if failed else 0)
