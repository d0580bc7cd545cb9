"""The built-in handler chain steps, one module each.

``BUILTIN`` maps the names used in ``[pipeline] handlers`` to handler classes. Every class has
``name`` (ClassVar), ``async handle(job) -> Job`` and ``from_context(ctx) -> handler``, which
takes what it needs from :class:`harbord.context.Context`.
"""

from __future__ import annotations

from typing import Any

BUILTIN: dict[str, Any] = {}


def _register() -> None:
    import importlib

    for name, module, cls in [
        ("parse", "handlers.parse", "Parse"),
        ("probe", "handlers.probe", "Probe"),
        ("checksum", "handlers.checksum", "Checksum"),
        ("store", "handlers.store", "Store"),
        ("embed", "handlers.embed", "Embed"),
        ("index", "handlers.index", "Index"),
    ]:
        BUILTIN[name] = getattr(importlib.import_module(module), cls)


_register()
