"""``harbord rebuild-catalog`` (a click command; the group adds it). The work is in
:mod:`handlers.files.rebuild`."""

from __future__ import annotations

import json
import sys

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harbord.cli.common import console, out, print_json
from harbord.config import Config

LISTED = 10
"""Files left out that are named one by one in the text output (``--json`` has them all)."""


@click.command("rebuild-catalog")
@click.option("--probe/--no-probe", default=True, show_default=True,
              help="Run probe on every object again (MediaInfo/EXIF: a few ms per file).")
@click.option("--force", is_flag=True,
              help="Rebuild even a sound catalog that holds objects (it is kept aside).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.pass_obj
def rebuild_catalog(config: Config, probe: bool, force: bool, as_json: bool) -> None:
    """Rebuild a damaged or lost catalog (harbord.db) from the library; daemon stopped.

    \b
    Recovers, from <library>/objects:
      objects     every object whose content still hashes (BLAKE3) to its name;
                  one that does not is reported, left out and left in place
      items       one per object: media type from the extension, probe facts
                  (re-run; --no-probe leaves them empty), title and year from
                  the file's own tags when it has them
      sidecars    <h>.en.srt, <h>.info.json, <h>.nfo, <h>-poster.jpg, <h>_meta.xml
                  ... beside each object, recorded as files (not read)
    Cannot recover: original file names and paths (so titles, seasons and
    episodes parsed from them), item ids, the job history, user-edited fields,
    enrichment, the MQTT outbox, the embedding vectors' id map (`harbord
    reindex` cannot bring search back). Ingesting the original files again
    restores their names, titles and search; their objects are not copied twice.

    The old harbord.db is never deleted: it is renamed harbord.db.damaged-<time>
    (harbord.db.replaced-<time> with --force). Exit 0 when every object was
    recovered, 1 when some were left out, 2 when nothing was done.
    """
    from handlers.files.rebuild import rebuild_catalog as rebuild

    progress = Progress(TextColumn("verify"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, disable=as_json)
    task = progress.add_task("verify", total=None)

    def advance(done: int, total: int) -> None:
        if done == 1:  # shown once the checks passed and the library was listed
            progress.start()
        progress.update(task, completed=done, total=total)

    try:
        report = rebuild(config, probe=probe, force=force, progress=advance)
    finally:
        progress.stop()
    left_out = report.mismatched + report.unreadable
    if as_json:
        print_json(json.dumps(report.to_dict()))
    else:
        if report.moved_to:
            out.print(f"old database kept as {escape(report.moved_to)}", highlight=False, soft_wrap=True)
        out.print(f"rebuilt {escape(report.db)}: {report.items} items, {report.objects} objects "
                  f"({report.bytes:,} bytes), {report.sidecars} sidecars in {report.seconds:.1f} s",
                  highlight=False, soft_wrap=True)
        for what, rows in (("content does not match its name, left out", report.mismatched),
                           ("unreadable, left out", report.unreadable),
                           ("probe failed (catalogued without probe facts)", report.probe_failed)):
            for row in rows[:LISTED]:
                out.print(f"[yellow]{what}[/yellow]: {escape(row['path'])}", highlight=False, soft_wrap=True)
        for what, paths in (("sidecar without its object", report.orphans),
                            ("not an object or sidecar name", report.unknown)):
            for path in paths[:LISTED]:
                out.print(f"[yellow]{what}[/yellow]: {escape(path)}", highlight=False, soft_wrap=True)
        hidden = sum(max(0, len(x) - LISTED) for x in (report.mismatched, report.unreadable,
                     report.probe_failed, report.orphans, report.unknown))
        if hidden:
            out.print(f"... and {hidden} more (see --json)")
    sys.exit(1 if left_out else 0)
