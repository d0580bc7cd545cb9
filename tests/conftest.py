"""Shared fixtures: a private Mosquitto broker per session, temp configs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harbord.context import Context
from tests.support.broker import Mosquitto
from tests.support.contexts import catalog_context


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
    """A handler Context on a real SQLite catalog under ``tmp_path`` (see tests.support.contexts)."""
    with catalog_context(tmp_path) as context:
        yield context


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    """An empty drop folder ``tmp_path/inbox``."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder
