"""fsio's one copy of the durable-write and flock patterns, contended for real."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harbord import daemon_lock
from harbord.errors import HarbordError
from harbord.fsio import locked, try_lock, write_atomic

ROOT = Path(__file__).resolve().parents[1]
HOLDER = """
import sys, time
from harbord.fsio import try_lock
fd = try_lock(sys.argv[1])
print("held" if fd is not None else "busy", flush=True)
sys.stdin.readline()  # hold until told to go
"""


def _holder(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0
    if proc.stdout is not None:
        proc.stdout.close()


def test_try_lock_fails_fast_while_another_process_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "writer.lock"
    proc = _holder(path)
    try:
        started = time.monotonic()
        assert try_lock(path) is None
        assert time.monotonic() - started < 1.0
        with pytest.raises(BlockingIOError), locked(path, blocking=False):
            pass
    finally:
        _release(proc)
    fd = try_lock(path)  # the holder is gone: the kernel dropped its lock
    assert fd is not None
    os.close(fd)


def test_a_second_descriptor_in_the_same_process_contends_too(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    fd = try_lock(path)
    assert fd is not None
    try:
        assert try_lock(path) is None  # flock is per open file, not per process
        assert try_lock(path, shared=True) is None
    finally:
        os.close(fd)
    shared = try_lock(path, shared=True)
    assert shared is not None
    other = try_lock(path, shared=True)  # shared locks coexist
    assert other is not None
    os.close(shared)
    os.close(other)


def test_locked_waits_for_the_holder_and_releases_on_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "save.lock"
    order: list[str] = []
    with locked(path):
        def second() -> None:
            with locked(path):
                order.append("second")

        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.2)
        order.append("first done")
    waiter.join(timeout=10)
    assert order == ["first done", "second"]
    fd = try_lock(path)  # released by the with block
    assert fd is not None
    os.close(fd)


def test_daemon_lock_names_the_holder_and_running_pid_sees_it(tmp_path: Path) -> None:
    assert daemon_lock.running_pid(tmp_path) is None  # no daemon.lock at all
    assert not (tmp_path / daemon_lock.LOCK_NAME).exists()  # (and none made by asking)
    handle = daemon_lock.hold(tmp_path)
    try:
        assert (tmp_path / daemon_lock.LOCK_NAME).read_text() == f"{os.getpid()}\n"
        assert daemon_lock.running_pid(tmp_path) == os.getpid()
        with pytest.raises(HarbordError, match=rf"another harbord daemon \(pid {os.getpid()}\)"):
            daemon_lock.hold(tmp_path)
    finally:
        handle.close()
    assert daemon_lock.running_pid(tmp_path) is None


def test_write_atomic_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    write_atomic(path, b"old")
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "x.json", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]
