"""errors.translate: library exceptions become the chain's errors at a step's boundary."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from harbord.errors import (
    DATABASE_BUSY,
    HandlerError,
    PermanentError,
    RetryableError,
    Skip,
    SpaceBusyError,
    VectorError,
    translate,
)


def test_a_class_value_is_raised_with_the_message_from_the_original() -> None:
    original = ValueError("bad frame")
    with pytest.raises(PermanentError, match=r"^bad frame$") as caught, \
            translate({ValueError: PermanentError}):
        raise original
    assert caught.value.__cause__ is original


def test_the_most_specific_key_wins_whatever_the_order() -> None:
    # the general key first in the mapping, the specific one last
    mapping = {VectorError: PermanentError, OSError: PermanentError,
               SpaceBusyError: RetryableError, FileNotFoundError: RetryableError}
    with pytest.raises(RetryableError, match="another process"), translate(mapping):
        raise SpaceBusyError("another process writes it")
    with pytest.raises(PermanentError), translate(mapping):
        raise VectorError("corrupt id map")
    with pytest.raises(RetryableError), translate(mapping):
        raise FileNotFoundError(errno.ENOENT, "gone")
    with pytest.raises(PermanentError), translate(mapping):
        raise IsADirectoryError(errno.EISDIR, "a folder")  # only OSError matches: its base


def test_a_callable_value_builds_the_error_from_the_exception() -> None:
    seen: list[BaseException] = []

    def to_retry(err: OSError) -> BaseException:
        seen.append(err)
        return RetryableError(f"write failed: {err.strerror}")

    original = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(RetryableError, match=r"^write failed: No space left on device$") as caught, \
            translate({OSError: to_retry}):
        raise original
    assert seen == [original] and caught.value.__cause__ is original


def test_a_callable_returning_the_exception_itself_lets_it_pass_untouched() -> None:
    original = KeyError("x")
    with pytest.raises(KeyError) as caught, translate({KeyError: lambda err: err}):
        raise original
    assert caught.value is original and caught.value.__cause__ is None


def test_unmatched_exceptions_skip_and_handler_errors_pass_untouched() -> None:
    catch_all = {Exception: PermanentError}
    with pytest.raises(KeyError), translate({ValueError: PermanentError}):
        raise KeyError("k")
    skip = Skip("duplicate", "same content as item 3")
    with pytest.raises(Skip) as caught, translate(catch_all):
        raise skip
    assert caught.value is skip
    for error in (RetryableError("busy"), PermanentError("corrupt")):
        with pytest.raises(HandlerError) as handled, translate({**catch_all, HandlerError: RetryableError}):
            raise error
        assert handled.value is error and handled.value.__cause__ is None
    with pytest.raises(KeyboardInterrupt), translate(catch_all):  # not an Exception
        raise KeyboardInterrupt


def test_nothing_raised_means_nothing_translated() -> None:
    with translate({Exception: PermanentError}):
        value = 1 + 1
    assert value == 2


def test_translate_works_around_awaits() -> None:
    import asyncio

    async def step() -> None:
        with translate({OSError: PermanentError}):
            await asyncio.sleep(0)
            raise OSError("late")

    with pytest.raises(PermanentError, match="late"):
        asyncio.run(step())


def test_a_locked_sqlite_database_becomes_retryable(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, isolation_level=None, timeout=0.05)
    try:
        holder.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(RetryableError, match=r"^database: database is locked$") as caught, \
                translate(DATABASE_BUSY):
            other.execute("INSERT INTO t VALUES (2)")
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        # another OperationalError is not "busy": it passes for the chain runner to judge
        with pytest.raises(sqlite3.OperationalError, match="no such table"), translate(DATABASE_BUSY):
            holder.execute("SELECT * FROM missing")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        other.close()
