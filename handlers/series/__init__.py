"""The ``series`` capability: TV series grouping and ``harbord series`` (the sources and series issue).

For now it contributes only the item text read from the ``items.series`` column (:mod:`.text`).
"""

from __future__ import annotations

from harbord.capability import Capability

CAPABILITY = Capability(name="series", text=("handlers.series.text:facts",))
