"""Running the core's coroutines from Qt slots as tasks on the qasync loop.

A slot never awaits; it calls ``TaskRunner.spawn(coro, what)`` and returns. A failure is
reported through ``task_failed`` in words (``what`` says what was attempted), never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from PySide6.QtCore import QObject, Signal

from ..core import KernelmonError

logger = logging.getLogger(__name__)


class TaskRunner(QObject):
    """Keeps the tasks it starts alive and reports how they end."""

    #: ``(what, message, is_kernelmon_error)``: a task failed; ``message`` is for people.
    task_failed = Signal(str, str, bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def running(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, what))
        return task

    def _done(self, task: asyncio.Task[Any], what: str) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        expected = isinstance(exc, KernelmonError)
        if expected:
            logger.warning("%s failed: %s", what, exc)
        else:
            logger.error("%s failed", what, exc_info=(type(exc), exc, exc.__traceback__))
        message = str(exc) if expected else f"{type(exc).__name__}: {exc}"
        try:
            self.task_failed.emit(what, message, expected)
        except RuntimeError:  # the window is gone (quitting): the log has it
            pass

    async def wait_all(self) -> None:
        """Wait until every task started so far (and those they start) has ended."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def finish(self, timeout: float) -> None:
        """Let running tasks end by themselves for up to ``timeout`` seconds (a restart
        half-done is worse than a short wait), then cancel what is left."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        self.cancel_all()
        await self.wait_all()

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
