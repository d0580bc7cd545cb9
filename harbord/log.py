"""structlog setup: JSON lines when stderr is not a TTY (journald), readable console on a TTY.

Every log line of a job carries ``job_id`` (bound with :func:`structlog.contextvars`). Values
under keys that look like secrets (password, api_key, token, secret) are replaced by ``***``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SECRET_KEYS = ("password", "passwd", "api_key", "apikey", "token", "secret", "authorization")


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask values whose key names a secret."""
    for key in list(event):
        if any(word in key.lower() for word in SECRET_KEYS):
            event[key] = "***"
    return event


def setup_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog (and stdlib logging of libraries) once per process.

    ``fmt``: ``json`` (one JSON object per line), ``console`` (colours), ``auto`` (console on a
    TTY, JSON otherwise). ``level``: debug, info, warning, error.
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    numeric = getattr(logging, level.upper(), logging.INFO)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
        structlog.processors.StackInfoRenderer(),
    ]
    if use_json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(
        level=max(numeric, logging.WARNING), stream=sys.stderr, format="%(name)s: %(message)s"
    )
