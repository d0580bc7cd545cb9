"""What a test may leave behind in this process: threads, inotify instances, child processes.

Linux only (reads ``/proc``). :func:`snapshot` before a test and :func:`check` after it give
the list of what the test left running, each entry saying what it is (thread name and
target, inotify fd and its watch count, child pid, state and command line), so the leak
guard in ``tests/conftest.py`` can fail the test with it. :func:`check` waits up to
``grace`` seconds for things that are already ending (a thread returning after its stop
signal, a child exiting after SIGTERM) before it calls them leaked.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

GRACE_SECONDS = 5.0
"""How long :func:`check` waits for threads and processes that are on their way out."""


@dataclass(frozen=True)
class Child:
    """A process whose parent is this process (or one of the exempt parents, see :func:`check`)."""

    pid: int
    ppid: int
    state: str
    """The ``/proc/<pid>/stat`` state letter: ``Z`` is a zombie nobody waited for."""
    cmdline: str

    def __str__(self) -> str:
        zombie = " (exited, never waited for)" if self.state == "Z" else ""
        return f"pid {self.pid} (parent {self.ppid}, state {self.state}{zombie}): {self.cmdline}"


@dataclass
class Snapshot:
    """What this process had before a test."""

    threads: set[threading.Thread] = field(default_factory=set)
    inotify: dict[int, int] = field(default_factory=dict)
    """Open inotify instances: fd -> number of watches."""
    children: set[int] = field(default_factory=set)


def inotify_instances() -> dict[int, int]:
    """This process's inotify instances: fd -> number of watches on it (``/proc/self/fdinfo``)."""
    found: dict[int, int] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{name}", encoding="ascii", errors="replace") as info:
                found[int(name)] = sum(1 for line in info if line.startswith("inotify wd:"))
        except OSError:  # closed meanwhile (listdir's own fd is one of them)
            continue
    return found


def children(parents: Collection[int]) -> dict[int, Child]:
    """Every live or zombie process whose parent pid is one of ``parents`` (a ``/proc`` scan)."""
    found: dict[int, Child] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses
            comm = stat[stat.index(b"(") + 1 : stat.rindex(b")")].decode(errors="replace")
            state, ppid = stat[stat.rindex(b")") + 2 :].split()[:2]
            if int(ppid) not in parents:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):  # gone meanwhile
            continue
        found[int(entry)] = Child(int(entry), int(ppid), state.decode(), cmdline or f"[{comm}]")
    return found


def snapshot(parents: Collection[int]) -> Snapshot:
    """Threads, inotify instances and the children of ``parents`` right now."""
    return Snapshot(set(threading.enumerate()), inotify_instances(), set(children(parents)))


def describe_thread(thread: threading.Thread) -> str:
    """``name`` (daemon or not) and the function it runs, as far as Python knows it."""
    target = getattr(thread, "_target", None)
    runs = getattr(target, "__qualname__", None) or type(thread).__qualname__
    module = getattr(target, "__module__", None) or type(thread).__module__
    kind = "daemon thread" if thread.daemon else "thread"
    return f"{kind} {thread.name!r} running {module}.{runs}"


def check(
    before: Snapshot,
    *,
    parents: Callable[[], Collection[int]],
    exempt_pids: Callable[[], Collection[int]],
    benign_thread: Callable[[threading.Thread], bool],
    grace: float = GRACE_SECONDS,
) -> list[str]:
    """What appeared since ``before`` and is still there after up to ``grace`` seconds.

    ``parents()``: the pids whose children count as this process's (itself, and processes
    such as the multiprocessing fork server that fork on its behalf); ``exempt_pids()``:
    children deliberately kept across tests; ``benign_thread``: threads a library starts
    once per process. Threads are waited for by joining them (returns as soon as each ends);
    fds and processes by looking again every 20 ms.
    """
    deadline = time.monotonic() + grace

    def new_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate()
                if t not in before.threads and t.is_alive() and not benign_thread(t)]

    for thread in new_threads():
        thread.join(max(0.0, deadline - time.monotonic()))

    def new_inotify() -> dict[int, int]:
        now = inotify_instances()
        return {fd: watches for fd, watches in now.items()
                if fd not in before.inotify or watches > before.inotify[fd]}

    def new_children() -> list[Child]:
        exempt = set(exempt_pids())
        return [c for pid, c in sorted(children(parents()).items())
                if pid not in before.children and pid not in exempt]

    while (new_inotify() or new_children()) and time.monotonic() < deadline:
        time.sleep(0.02)

    report: list[str] = []
    threads, inotify, procs = new_threads(), new_inotify(), new_children()
    if threads:
        report.append(f"{len(threads)} thread(s) still running:")
        report += [f"  {describe_thread(t)}" for t in threads]
    if inotify:
        report.append(f"{len(inotify)} inotify instance(s) still open (or with more watches):")
        report += [f"  fd {fd} with {watches} watch(es)"
                   + (f" (had {before.inotify[fd]})" if fd in before.inotify else "")
                   for fd, watches in sorted(inotify.items())]
    if procs:
        report.append(f"{len(procs)} child process(es) still there:")
        report += [f"  {c}" for c in procs]
    return report
