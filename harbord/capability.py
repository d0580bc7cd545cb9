"""Capabilities: what a package under ``handlers/`` may contribute, and the registry of them.

The engine reaches a capability only through this module: the tuple ``handlers.BUILTIN``
(imported by name, :data:`REGISTRY`) lists the built-in capabilities, in the way datasette's
``DEFAULT_PLUGINS`` loads built-in features through the hooks an outside plugin uses. A
capability is a :class:`Capability` value: its ``name`` and what it contributes —

- ``steps``: chain steps (:class:`Step`: a name for ``[pipeline] handlers``, the handler class
  as ``"module:Class"``, and the modules the CPU pool's fork server preloads and warms when the
  step is in the chain);
- ``config``: config sections, ``{key: pydantic model}``, mounted on the core config under
  their own keys (unknown keys inside stay errors);
- ``migrations``: catalog migrations on the capability's own version track, recorded in
  ``schema_versions(capability, version)`` (migration ``i`` brings it from ``i`` to ``i + 1``);
- ``commands``: click commands, ``"module:attr"``, added to the ``harbord`` group;
- ``doctor``: checks, ``"module:function"``, each ``(Config) -> Iterable[Check]``;
- ``text``: contributions to an item's embedding text, ``"module:function"``, each
  ``(item row) -> TextFacts`` (see :mod:`handlers.search.item_text`);
- ``subscribers``: event subscribers, ``"module:function"``, each ``(Context) -> EventSink``;
  the daemon adds what they return to its fan-out sink (:class:`harbord.events.FanOut`);
- ``tasks``: background tasks of the daemon, ``"module:function"``, each an ``async
  (Context, stop: asyncio.Event) -> None`` that returns once ``stop`` is set; supervised
  (restarted with backoff after a crash) like the daemon's own tasks;
- ``routes``: HTTP routes, ``"module:attr"`` (for the HTTP API issue).

Everything named as ``"module:attr"`` is imported on first use (:func:`resolve`), so listing the
capabilities (every CLI command validates a config, which needs the step names and config
sections) imports no parser, model or client library.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from sqlite_utils import Database

    from harbord.chain import Handler

REGISTRY = "handlers"
"""The package whose ``BUILTIN`` tuple lists the built-in capabilities."""

Migration = Callable[["Database"], None]
"""A schema migration: runs its statements on the database, inside the caller's transaction."""


class Section(BaseModel):
    """Base of a capability's config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Step:
    """A chain step a capability contributes.

    ``target`` is ``"module:Class"`` of a class satisfying :class:`harbord.chain.Handler`;
    ``pool`` names the modules the CPU process pool preloads (and whose optional top-level
    ``warm_worker()`` it runs) when the step is in ``[pipeline] handlers``.
    """

    name: str
    target: str
    pool: tuple[str, ...] = ()


@dataclass(frozen=True)
class Capability:
    """What one capability contributes (see the module docstring); every field but ``name``
    may be left empty."""

    name: str
    steps: Sequence[Step] = ()
    config: Mapping[str, type[BaseModel]] = field(default_factory=dict)
    migrations: Sequence[Migration] = ()
    commands: Sequence[str] = ()
    doctor: Sequence[str] = ()
    text: Sequence[str] = ()
    routes: Sequence[str] = ()
    subscribers: Sequence[str] = ()
    tasks: Sequence[str] = ()


def resolve(ref: str) -> Any:
    """Import ``"module:attr"`` and return the attribute. Raises ImportError or AttributeError."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@cache
def capabilities() -> tuple[Capability, ...]:
    """The registered capabilities, in the registry's order (imports only their descriptors).

    Raises RuntimeError when two capabilities contribute the same step name or config key.
    """
    caps: tuple[Capability, ...] = tuple(importlib.import_module(REGISTRY).BUILTIN)
    seen: dict[str, str] = {}
    for cap in caps:
        for key in [f"step {s.name}" for s in cap.steps] + [f"config [{k}]" for k in cap.config]:
            if key in seen:
                raise RuntimeError(f"capabilities {seen[key]} and {cap.name} both contribute {key}")
            seen[key] = cap.name
    return caps


def step_specs() -> dict[str, Step]:
    """Every contributed step by name."""
    return {step.name: step for cap in capabilities() for step in cap.steps}


class _Steps(Mapping[str, "type[Handler]"]):
    """Step name -> handler class, importing the class's module on first access."""

    def __getitem__(self, name: str) -> type[Handler]:
        cls: type[Handler] = resolve(step_specs()[name].target)
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(step_specs())

    def __len__(self) -> int:
        return len(step_specs())


STEPS: Mapping[str, type[Handler]] = _Steps()
"""The step registry derived from the capabilities: ``STEPS["parse"]`` is the handler class
(its module imported then); iterating lists the names without importing anything."""


def config_sections() -> dict[str, type[BaseModel]]:
    """Every capability's config sections by key (``{"embed": EmbedConfig, ...}``)."""
    return {key: model for cap in capabilities() for key, model in cap.config.items()}


def contributions(kind: str) -> list[Any]:
    """The resolved ``"module:attr"`` contributions of every capability for field ``kind``
    (``"commands"``, ``"doctor"``, ``"text"``, ``"routes"``, ``"subscribers"``, ``"tasks"``), in
    registry order."""
    return [resolve(ref) for cap in capabilities() for ref in getattr(cap, kind)]


def pool_setup(chain: Sequence[str]) -> dict[str, list[str]]:
    """What the CPU pool preloads for the steps ``chain``: ``preload`` = the pool modules of
    those steps (the fork server imports them once for all workers), ``warmups`` = each such
    module's optional ``warm_worker()`` (run by the fork server, and by each worker as it starts)."""
    specs = step_specs()
    modules = list(dict.fromkeys(m for name in chain if name in specs for m in specs[name].pool))
    return {"preload": modules, "warmups": [f"{m}:warm_worker" for m in modules]}
