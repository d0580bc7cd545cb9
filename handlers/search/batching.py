"""Micro-batching for asyncio callers: many ``await submit(x)`` -> one ``fn([x, ...])`` call.

Workers each handle one job; batching lets the embedder run one forward pass for the texts
of every job that is waiting, and the index commit one SQLite transaction and one hnswlib
``add_items`` call for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class Batcher(Generic[In, Out]):
    """Collect submissions for up to ``max_wait`` seconds or ``max_batch`` items, then call
    ``fn(batch)`` (which must return one result per input, in order).

    If ``fn`` raises, every caller in that batch gets the exception. One batch runs at a time,
    so ``fn`` never runs concurrently with itself. Must be used from one event loop.
    """

    def __init__(self, fn: Callable[[list[In]], Awaitable[Sequence[Out]]], *, max_batch: int = 64,
                 max_wait: float = 0.005) -> None:
        self._fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._pending: list[tuple[In, asyncio.Future[Out]]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: In) -> Out:
        """Queue ``item`` and wait for its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        self._pending.append((item, future))
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        if len(self._pending) >= self.max_batch:
            self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        assert self._wakeup is not None
        while self._pending:
            if len(self._pending) < self.max_batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.max_wait)
            self._wakeup.clear()
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            live = [(item, fut) for item, fut in batch if not fut.done()]
            if not live:
                continue
            try:
                results = await self._fn([item for item, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(live)}")
            except Exception as err:
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            for (_, fut), result in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    async def drain(self) -> None:
        """Wait until every submitted item has been processed."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
