"""The recorded data files (API responses, release names) kept outside this repository."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
"""``<checkout>/../shared/fixtures``: this file is ``<checkout>/tests/support/fixtures.py``."""


def recorded_objects(skip_tv: bool = False) -> Iterator[dict[str, Any]]:
    """Every JSON object, at any depth, of the recorded TMDb and OMDb responses (files in
    sorted order, depth first); ``skip_tv`` leaves out the TV search/detail files."""

    def walk(node: object) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            yield node
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for path in sorted([*FIXTURES.glob("tmdb/**/*.json"), *FIXTURES.glob("omdb/**/*.json")]):
        if skip_tv and ("search-tv" in path.name or "tv-" in path.name or "search_tv" in path.name):
            continue
        yield from walk(json.loads(path.read_text(encoding="utf-8")))
