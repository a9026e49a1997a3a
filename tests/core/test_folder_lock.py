"""FolderLock: one holder at a time, across processes and within one; a killed holder's lock
is free at once; waiting never blocks the loop."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

from kernelmon.core.folder_lock import FolderLock

HOLD = """
import sys, time
from kernelmon.core.folder_lock import FolderLock
lock = FolderLock(sys.argv[1], "test")
assert lock.try_acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_one_holder_across_processes_and_freed_by_kill_9(aio, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        mine = FolderLock(tmp_path, "test")
        assert not mine.try_acquire()

        async def wait_while_ticking() -> tuple[bool, int]:
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.ensure_future(tick())
            got = await mine.acquire(timeout=0.5)
            ticker.cancel()
            return got, ticks

        got, ticks = aio.run(wait_while_ticking())
        assert not got
        assert ticks > 10  # the loop kept turning while waiting
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert aio.run(mine.acquire(timeout=5))
        assert mine.held
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    # a second holder in the same process is refused too, until the first releases
    other = FolderLock(tmp_path, "test")
    assert not other.try_acquire()
    mine.release()
    assert other.try_acquire()
    other.release()
    assert (tmp_path / ".test.lock").stat().st_mode & 0o777 == 0o600
