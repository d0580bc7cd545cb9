"""Waiting on a condition instead of sleeping a fixed time, in plain and in async tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def wait_until(pred: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05,
               what: str = "") -> Any:
    """Poll ``pred`` until truthy; returns its value or raises AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what or 'condition'} not met within {timeout} s")


async def async_wait_until(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01,
                           what: str = "") -> Any:
    """:func:`wait_until` for async tests: polls ``pred`` on the event loop, letting the loop run
    (and the code under test with it) between polls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"{what or 'condition'} not met within {timeout} s")
