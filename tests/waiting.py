"""Waiting for a condition in tests: the one ``wait_until`` every test imports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_until(
    predicate: Callable[[], object],
    timeout: float = 20.0,
    what: str = "",
    interval: float = 0.02,
) -> None:
    """Wait, letting the running loop (asyncio or qasync) work, until ``predicate()`` is
    true; fail after ``timeout`` seconds naming ``what`` (or the predicate)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(interval)
