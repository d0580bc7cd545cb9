"""The built-in capabilities, one package each (see :mod:`harbord.capability`).

``BUILTIN`` lists them in one explicit tuple; the engine derives the step registry, config
sections, migrations, commands, doctor checks, pool modules and item-text contributions from it
(:func:`harbord.capability.capabilities`). Each package's ``__init__`` holds only its
:class:`~harbord.capability.Capability` descriptor, so importing this tuple imports no parser,
model or client library: what a descriptor names as ``"module:attr"`` is imported on first use.

To add a capability: make a package here with a ``CAPABILITY`` descriptor, and add it to
``BUILTIN`` (README, "Development").
"""

from __future__ import annotations

from handlers import enrich, files, search, series
from harbord.capability import Capability

BUILTIN: tuple[Capability, ...] = (
    files.CAPABILITY,
    search.CAPABILITY,
    enrich.CAPABILITY,
    series.CAPABILITY,
)
