"""Run CPU-bound work off the event loop.

``cpu(fn, *args)`` runs a picklable top-level function in a process pool (guessit and
pymediainfo hold the GIL; a pool lets 2 cores parse two names at once). Without a configured
pool it falls back to a thread. ``io(fn, *args)`` runs GIL-releasing work (BLAKE3, file copies)
in a thread.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_pool: ProcessPoolExecutor | None = None


def configure(processes: int) -> None:
    """Start the shared process pool with ``processes`` workers (0 = one per core)."""
    global _pool
    shutdown()
    count = processes or os.cpu_count() or 1
    _pool = ProcessPoolExecutor(max_workers=count, mp_context=multiprocessing.get_context("spawn"))


def shutdown() -> None:
    """Stop the pool (waits for running calls)."""
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None


async def cpu(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in the process pool if configured, else in a thread."""
    loop = asyncio.get_running_loop()
    if _pool is not None:
        return await loop.run_in_executor(_pool, fn, *args)
    return await asyncio.to_thread(fn, *args)


async def io(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking I/O or GIL-releasing work in a thread."""
    return await asyncio.to_thread(fn, *args)
