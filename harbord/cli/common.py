"""What the ``harbord`` commands share: the consoles, JSON output, errors, logging set-up."""

from __future__ import annotations

import sys
from typing import NoReturn

import click
from rich.console import Console
from rich.markup import escape

from harbord.config import Config

console = Console(stderr=True)
out = Console()


def print_json(text: str) -> None:
    """Print a JSON document on stdout: colourised and indented on a terminal, else the text
    as is, one line. rich's highlighting costs ~3 ms per line of output (0.6 s for the 200-file
    result of ``ingest --json``), which a program reading the output does not need."""
    if out.is_terminal:
        out.print_json(text)
    else:
        click.echo(text)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``harbord: <message>`` on stderr as one line (not wrapped at 80 columns, no markup
    read in it: a path may hold ``[...]``), then exit with ``code``."""
    console.print(f"[red]harbord:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def setup_logging(config: Config) -> None:
    """Configure structlog from ``config.log``."""
    from harbord import log

    log.setup_logging(config.log.level, config.log.format)
