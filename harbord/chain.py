"""The Handler protocol and the chain runner.

The core knows handlers only through this protocol and the step registry the capabilities
contribute (:data:`harbord.capability.STEPS`).
"""

from __future__ import annotations

import sqlite3
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol, Self, runtime_checkable

from harbord.errors import HandlerError, PermanentError, RetryableError, Skip
from harbord.job import Job
from harbord.txn import is_busy

if TYPE_CHECKING:
    from harbord.context import Context


@runtime_checkable
class Handler(Protocol):
    """One step of the chain.

    ``handle`` returns a new Job (``dataclasses.replace``); it must be idempotent (running it
    twice after a crash changes nothing). It raises RetryableError, PermanentError or Skip.
    """

    name: ClassVar[str]

    @classmethod
    def from_context(cls, ctx: Context) -> Self:
        """Build the step from what it needs in the run's context (config, catalog, shared
        resources); called once per run. Raises ConfigError when the step cannot be built."""
        ...

    async def handle(self, job: Job) -> Job:
        """Process one job and return the updated record."""
        ...


StageDone = Callable[[int, Job], Awaitable[None]]


async def run_stage(handler: Handler, job: Job) -> Job:
    """Run one handler, normalising what it raises.

    Returns the handler's Job. Raises HandlerError subclasses with ``handler``, ``job_id`` and
    ``path`` filled in; Skip passes through untouched; SQLite's "database is locked/busy" (a
    step's own connection waiting out its busy timeout behind another process) becomes a
    RetryableError; any other exception becomes a PermanentError whose message carries the
    exception and its last traceback line.
    """
    try:
        return await handler.handle(job)
    except HandlerError as err:
        err.handler = err.handler or handler.name
        err.job_id = err.job_id or job.id
        err.path = err.path or job.path
        raise
    except Skip:
        raise
    except sqlite3.OperationalError as err:
        cls = RetryableError if is_busy(err) else PermanentError
        raise cls(f"database: {err}", handler=handler.name, job_id=job.id, path=job.path) from err
    except Exception as err:  # the worker must live on; keep the traceback in the message
        tb = traceback.format_exc(limit=-1).strip().splitlines()[-1]
        raise PermanentError(
            f"unexpected {type(err).__name__}: {err} ({tb})",
            handler=handler.name,
            job_id=job.id,
            path=job.path,
        ) from err


async def run_chain(
    handlers: Sequence[Handler], job: Job, start: int = 0, on_stage: StageDone | None = None
) -> Job:
    """Run ``handlers[start:]`` in order; after stage ``i`` finishes call ``on_stage(i + 1, job)``.

    ``on_stage`` is where the durable job table records progress (next stage index and the Job).
    Raises whatever :func:`run_stage` raises; the caller decides retry/fail/skip.
    """
    for index in range(start, len(handlers)):
        job = await run_stage(handlers[index], job)
        if on_stage is not None:
            await on_stage(index + 1, job)
    return job
