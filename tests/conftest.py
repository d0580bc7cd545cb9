"""Shared fixtures: a private Mosquitto broker per session, temp configs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import Mosquitto

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


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
