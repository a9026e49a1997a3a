"""A step run now and then every few seconds in a task, for the core's background work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


class Periodic:
    """Runs ``step()`` at once, then every ``interval()`` seconds; a failing step is logged
    (as ``what``) and the next one runs as planned."""

    def __init__(
        self, step: Callable[[], Awaitable[object]], interval: Callable[[], float], what: str
    ) -> None:
        self._step = step
        self._interval = interval
        self._what = what
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start (inside a running loop); does nothing while already running."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except Exception:
                logger.exception("%s failed", self._what)
            await asyncio.sleep(self._interval())
