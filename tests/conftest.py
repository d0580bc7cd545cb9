"""Shared fixtures: a private Mosquitto broker per session, temp configs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harbord.context import Context
from tests.broker import Mosquitto
from tests.contexts import catalog_context

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


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


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A running private broker; tests may stop/restart it but must leave it running."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def broker(mosquitto: Mosquitto) -> Iterator[Mosquitto]:
    """The session broker, guaranteed running at the start and the end of the test."""
    if mosquitto.proc is None or mosquitto.proc.poll() is not None:
        mosquitto.start()
    yield mosquitto
    if mosquitto.proc is None or mosquitto.proc.poll() is not None:
        mosquitto.start()


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    """A handler Context on a real SQLite catalog under ``tmp_path`` (see tests.contexts)."""
    with catalog_context(tmp_path) as context:
        yield context


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    """An empty drop folder ``tmp_path/inbox``."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder
