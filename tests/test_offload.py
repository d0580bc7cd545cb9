"""The CPU process pool: warm-ups run in the fork server, a crashed worker is replaced."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harbord import offload
from harbord.errors import RetryableError
from tests.support import pool_funcs
from tests.support.waits import async_wait_until

ROOT = Path(__file__).resolve().parents[1]


async def test_a_crashed_worker_fails_its_call_as_retryable_and_the_pool_is_replaced() -> None:
    offload.configure(1)
    try:
        first = await offload.cpu(pool_funcs.pid)
        with pytest.raises(RetryableError, match="CPU worker process died"):
            await offload.cpu(pool_funcs.crash)
        # The next calls run in a new worker instead of failing on the broken pool.
        results = await asyncio.gather(*(offload.cpu(pool_funcs.pid) for _ in range(3)))
        assert first not in results and len(set(results)) == 1
    finally:
        offload.shutdown()


async def test_calls_running_when_a_worker_dies_are_retryable_too(tmp_path: Path) -> None:
    offload.configure(2)
    try:
        # Which call crashed the pool cannot be told: the one still sleeping fails alike.
        flag = tmp_path / "sleeping"
        sleeping = asyncio.ensure_future(offload.cpu(pool_funcs.touch_then_sleep, str(flag), 5))
        await async_wait_until(flag.exists, 30, what="the sleeping call to run in a worker")
        outcomes = await asyncio.gather(offload.cpu(pool_funcs.crash), sleeping, return_exceptions=True)
        assert [type(o) for o in outcomes] == [RetryableError, RetryableError]
        assert isinstance(await offload.cpu(pool_funcs.pid), int)
    finally:
        offload.shutdown()


def test_warm_ups_run_in_the_fork_server_before_workers_fork() -> None:
    # A fresh interpreter: the fork server (one per process) must start with this preload.
    script = (
        "import asyncio, json, os\n"
        "from harbord import offload\n"
        "from tests.support import pool_funcs\n"
        "async def main():\n"
        "    offload.configure(1, preload=['tests.support.pool_funcs'],\n"
        "                      warmups=['tests.support.pool_funcs:warm'])\n"
        "    try:\n"
        "        return await offload.cpu(pool_funcs.warmed_in), await offload.cpu(pool_funcs.pid)\n"
        "    finally:\n"
        "        offload.shutdown()\n"
        "if __name__ == '__main__':\n"
        "    print(json.dumps(asyncio.run(main())))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    warmed, worker = json.loads(run.stdout)
    # Once in the fork server (another process, before the fork), once more in the worker.
    assert len(warmed) == 2 and warmed[0] != worker and warmed[1] == worker
