"""Shared fixtures: a private Mosquitto broker per session, temp configs, and the leak guard
that fails a test leaving a thread, an inotify instance or a child process behind."""

from __future__ import annotations

import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harbord.context import Context
from tests.support import leaks
from tests.support.broker import Mosquitto
from tests.support.contexts import catalog_context

_SESSION_BROKERS: list[Mosquitto] = []
"""The broker of the ``mosquitto`` session fixture (kept, and restarted, across tests)."""


def _forkserver_pid() -> int | None:
    """multiprocessing's fork server, if this process started one (see :func:`_kept_children`)."""
    return multiprocessing.forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]


def _parents() -> list[int]:
    """Processes whose children are this process's: itself, and the fork server, which forks
    the workers of harbord.offload's pool on this process's behalf."""
    server = _forkserver_pid()
    return [os.getpid()] + ([server] if server else [])


def _kept_children() -> set[int]:
    """Children deliberately kept across tests, each started once per session or process:

    - the session broker (``mosquitto`` fixture; tests may restart it, so its current pid);
    - multiprocessing's fork server: the stdlib starts one per process on the first
      forkserver pool (harbord.offload, in test_offload and test_probe) and keeps it until the
      process exits; it outlives every pool by design and cannot be stopped through the API.
      Only the server itself: the pool workers it forks are checked (see :func:`_parents`);
    - multiprocessing's resource tracker: started once per process by the first semaphore
      (a pool's queues), it lives until the process exits, likewise by design.
    """
    kept = {b.proc.pid for b in _SESSION_BROKERS if b.proc is not None}
    tracker = multiprocessing.resource_tracker._resource_tracker._pid  # type: ignore[attr-defined]
    return kept | {pid for pid in (_forkserver_pid(), tracker) if pid}


def _benign_thread(thread: threading.Thread) -> bool:
    """Threads a library starts once per process and keeps until exit:

    - tqdm's monitor (``tqdm_monitor``, a ``tqdm._monitor.TMonitor``): the first progress bar
      in the process (sentence-transformers loading or encoding with MiniLM) starts it as
      ``tqdm.monitor``; this tqdm never stops it when the bars close, only at exit. Only that
      one instance is exempt, not any thread of that class.
    """
    tqdm_std = sys.modules.get("tqdm.std")
    return tqdm_std is not None and thread is getattr(tqdm_std.tqdm, "monitor", None)


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves a thread, an inotify instance or a child process behind.

    Autouse and function-scoped, so it is set up after the session and module fixtures and
    torn down after every function fixture of the test: what those own is not counted, what
    the test or its function fixtures started and did not stop is. Threads, fds and processes
    on their way out get :data:`tests.support.leaks.GRACE_SECONDS`. The report names each
    leak (thread name and target, inotify fd and watches, child pid and command line).
    """
    before = leaks.snapshot(_parents())
    yield
    found = leaks.check(before, parents=_parents, exempt_pids=_kept_children,
                        benign_thread=_benign_thread)
    if found:
        pytest.fail("the test leaked:\n" + "\n".join(found), pytrace=False)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A running private broker; tests may stop/restart it but must leave it running."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    _SESSION_BROKERS.append(broker)
    yield broker
    _SESSION_BROKERS.remove(broker)
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
