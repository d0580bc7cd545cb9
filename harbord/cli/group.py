"""The ``harbord`` command group (click): global options, config loading, error handling.

Exit codes: 0 ok, 1 a job failed / a check failed, 2 bad usage or invalid config.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import click

from harbord import __version__
from harbord.cli.common import fail
from harbord.config import Config, load_config
from harbord.errors import HarbordError


class _Group(click.Group):
    """Turns HarbordError into a one-line message and exit code 2 instead of a traceback; an
    SQLite error no command turned into one (a damaged database met mid-command) too, naming
    the database file (:func:`harbord.integrity.catalog_error`)."""

    _capabilities_added = False

    def _add_capability_commands(self) -> None:
        """Add every capability's commands (``Capability.commands``) on first need: their
        modules import :mod:`harbord.cli.common`, so they cannot be added while this package
        is being imported."""
        if not self._capabilities_added:
            self._capabilities_added = True
            from harbord.capability import contributions

            for command in contributions("commands"):
                self.add_command(command)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Core and capability command names, sorted."""
        self._add_capability_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``, core or a capability's."""
        self._add_capability_commands()
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HarbordError as err:
            fail(str(err))
        except sqlite3.DatabaseError as err:
            from harbord.integrity import catalog_error

            db = ctx.obj.db_path if isinstance(ctx.obj, Config) else None
            fail(str(catalog_error(db, err)))


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


