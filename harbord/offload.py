"""Run CPU-bound work off the event loop.

``cpu(fn, *args)`` runs a picklable top-level function in a process pool (guessit and
pymediainfo hold the GIL; a pool lets 2 cores parse two names at once). Without a configured
pool it falls back to a thread. ``io(fn, *args)`` runs GIL-releasing work (BLAKE3, file copies)
in a thread.

The pool uses the ``forkserver`` start method with the handler modules preloaded: the fork
server imports them once and every worker is forked from it with nothing left to import; with
``spawn`` every worker imported them itself, competing with the main process's own start-up
(0.1-0.3 s more per ``harbord ingest`` here; the figures: README, Benchmarks, History).
Plain ``fork`` is not an option: the daemon has threads (watchdog observer, executor threads).
The handler modules import ``harbord.context``/``harbord.catalog`` for type checking only, so
the fork server's preload skips pydantic, sqlite-utils and numpy (it takes 0.21 s here).

Workers are started by a background thread (:func:`configure` returns at once), so the fork
server's imports run on the second core while the main process opens the database and queues
jobs; :func:`cpu` waits (without blocking the event loop) until the workers are up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import multiprocessing
import os
import select
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from harbord.errors import RetryableError

T = TypeVar("T")

WARMUPS_ENV = "HARBORD_POOL_WARMUPS"
"""Environment variable naming the warm-ups that :mod:`harbord.pool_warm` runs in the fork server."""

_pool: ProcessPoolExecutor | None = None
_ready: concurrent.futures.Future[None] | None = None
_starter: threading.Thread | None = None
_start_lock = threading.Lock()
_replace_lock = threading.Lock()
_settings: tuple[int, tuple[str, ...]] = (1, ())
"""(workers, warm-ups) of the configured pool, to replace a broken one alike."""


def _init_worker(owner: int, warmups: Sequence[str]) -> None:
    """Pool initializer, in each new worker: exit with the owning process ``owner`` (pid), then
    run the warm-ups (see :func:`run_warmups`)."""
    _exit_with(owner)
    run_warmups(warmups)


def run_warmups(warmups: Sequence[str]) -> None:
    """Call each ``"module:function"`` of ``warmups`` once. A warm-up is only an optimisation:
    one that is missing or fails is skipped (the real call reports the error)."""
    for name in warmups:
        module, _, function = name.partition(":")
        with contextlib.suppress(Exception):
            getattr(importlib.import_module(module), function)()


def _exit_with(owner: int) -> None:
    """End this worker as soon as process ``owner`` is gone. A worker waits on its call queue,
    whose write end it holds itself, so after a SIGKILL of the daemon or ``harbord ingest`` it
    would wait forever, and keep the fork server (which lives until its last client) with it."""
    try:
        fd = os.pidfd_open(owner)
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):  # no pidfd here (kernel < 5.3, seccomp): best effort
        return

    def watch() -> None:
        select.select([fd], [], [])
        os._exit(0)

    threading.Thread(target=watch, name="harbord-owner-watch", daemon=True).start()


def _noop() -> None:
    """Submitted once per worker at start-up so the workers exist before the first real call."""


def _start_workers(pool: ProcessPoolExecutor, count: int, ready: concurrent.futures.Future[None]) -> None:
    """Start ``count`` workers (each ``submit`` spawns one while none is idle) and wait for
    them, then resolve ``ready``. Errors are left to the first real call to report."""
    try:
        with contextlib.suppress(Exception):  # a broken pool raises again, with its reason, on use
            concurrent.futures.wait([pool.submit(_noop) for _ in range(count)])
    finally:
        ready.set_result(None)


def configure(
    processes: int,
    *,
    preload: Sequence[str] = (),
    warmups: Sequence[str] = (),
    start: bool = True,
) -> None:
    """Set up the shared process pool with ``processes`` workers (0 = one per core).

    ``preload``: module names the fork server imports before forking workers (the modules of
    the functions passed to :func:`cpu`); it only takes effect when the fork server starts,
    i.e. on the first call in a process. ``warmups``: ``"module:function"`` names of top-level
    functions (no arguments) run once by the fork server after the preload (see
    :mod:`harbord.pool_warm`), so every worker is forked warm, and once more by each worker as
    it starts (cheap when the fork server ran them; needed when the fork server was already
    running). guessit builds its rule set on its first call (~0.15-0.25 s); this way that is
    paid once, while the pool starts, not by the first file.
    ``start``: start the workers now (in the background); False starts them on the first
    :func:`cpu` call instead.
    """
    global _settings
    shutdown()
    count = processes or os.cpu_count() or 1
    ctx = multiprocessing.get_context("forkserver")
    if preload:
        # harbord.pool_warm, imported last by the fork server, runs the warm-ups there once.
        os.environ[WARMUPS_ENV] = " ".join(warmups)
        ctx.set_forkserver_preload([*preload, "harbord.pool_warm"])
    _settings = (count, tuple(warmups))
    _new_pool(start)


def _new_pool(start: bool) -> None:
    """Create the pool from :data:`_settings` and its starter thread (started if ``start``)."""
    global _pool, _ready, _starter
    count, warmups = _settings
    _pool = ProcessPoolExecutor(
        max_workers=count, mp_context=multiprocessing.get_context("forkserver"),
        initializer=_init_worker, initargs=(os.getpid(), warmups),
    )
    _ready = concurrent.futures.Future()
    _starter = threading.Thread(
        target=_start_workers, args=(_pool, count, _ready), name="harbord-pool-start", daemon=True
    )
    if start:
        _starter.start()


def _replace_broken(broken: ProcessPoolExecutor) -> None:
    """Put a new pool in place of ``broken`` (once, however many calls saw it break)."""
    with _replace_lock:
        if _pool is not broken:
            return  # another call replaced it already, or the pool was shut down
        broken.shutdown(wait=False, cancel_futures=True)
        _new_pool(start=True)


def _start() -> None:
    """Start the workers of a pool configured with ``start=False`` (once)."""
    with _start_lock:
        if _starter is not None and _starter.ident is None:
            _starter.start()


def shutdown() -> None:
    """Stop the pool (waits for running calls)."""
    global _pool, _ready, _starter
    with _start_lock:
        if _starter is not None and _starter.ident is not None:
            _starter.join()
        _starter = None
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None
    _ready = None


async def cpu(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in the process pool if configured, else in a thread.

    Raises RetryableError if a worker process died (killed, or a crash in native code such
    as libmediainfo): the pool is replaced at once, and every call that was running in it
    fails this way, since which one crashed it cannot be told; retried later, the innocent
    jobs pass and the culprit, crashing its worker each time, ends dead after
    ``pipeline.max_attempts``. Anything ``fn`` raises is raised as is.
    """
    pool, ready = _pool, _ready
    if pool is None:
        return await asyncio.to_thread(fn, *args)
    if ready is not None and not ready.done():
        _start()
        await asyncio.wrap_future(ready)
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
    except BrokenProcessPool as err:
        _replace_broken(pool)
        raise RetryableError(
            f"a CPU worker process died during this or a concurrent job ({err}); retried later"
        ) from err


async def io(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking I/O or GIL-releasing work in a thread."""
    return await asyncio.to_thread(fn, *args)


INLINE_BYTES = 64 * 1024
"""Files up to this size (bytes) are hashed, linked or copied on the loop thread itself: the
hand-off to a thread and back (~0.1-0.3 ms here, more when threads queue for the GIL) costs
more than the work (a 64 KiB BLAKE3 is ~10 us, a hardlink a few us)."""


async def small_io(size: int, fn: Callable[..., T], *args: Any) -> T:
    """:func:`io`, except for a file of at most :data:`INLINE_BYTES` (``size``, bytes, as
    settled; 0 = unknown, so a thread): then ``fn`` runs here at once."""
    if 0 < size <= INLINE_BYTES:
        return fn(*args)
    return await io(fn, *args)
