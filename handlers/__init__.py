"""The built-in handler chain steps, one module each.

``BUILTIN`` maps the names used in ``[pipeline] handlers`` to handler classes. Every class has
``name`` (ClassVar), ``async handle(job) -> Job`` and ``from_context(ctx) -> handler``, which
takes what it needs from :class:`harbord.context.Context`.

A handler's module is imported on first lookup (``BUILTIN["parse"]``), not when the registry is
imported: validating a config only needs the names, and every CLI command validates one.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

_MODULES: dict[str, tuple[str, str]] = {
    "parse": ("handlers.parse", "Parse"),
    "probe": ("handlers.probe", "Probe"),
    "checksum": ("handlers.checksum", "Checksum"),
    "store": ("handlers.store", "Store"),
    "embed": ("handlers.embed", "Embed"),
    "index": ("handlers.index", "Index"),
}
POOL_USERS = frozenset({"parse", "probe"})
"""Handlers that run work in the CPU process pool (:func:`harbord.offload.cpu`): the pool's
fork server preloads and warms their modules, and only theirs."""


def module_of(name: str) -> str:
    """The module of the built-in handler ``name`` (not imported). Raises KeyError."""
    return _MODULES[name][0]


class _Registry(Mapping[str, Any]):
    """Handler name -> class, importing the class's module on first access."""

    def __getitem__(self, name: str) -> Any:
        module, cls = _MODULES[name]
        return getattr(importlib.import_module(module), cls)

    def __iter__(self) -> Iterator[str]:
        return iter(_MODULES)

    def __len__(self) -> int:
        return len(_MODULES)


BUILTIN: Mapping[str, Any] = _Registry()
